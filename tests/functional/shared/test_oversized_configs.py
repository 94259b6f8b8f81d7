"""Every upload leaves a run that says what happened (issue 22, finding 4): a file over 1 MiB, and a config with
so many long unknown keys that all its errors would not fit the run, are both rejected with their reasons (the
errors summarised), through the blob trigger the Function App runs; with a ``notify`` section the rejection
also reaches the receiver. The local host's path (the same function, fired by its blob poller over Azurite, on
the table ledger) is tests/integration/test_oversized_configs_on_the_host.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.functions.blob import InputStream

from shared.ledger.limits import MAX_ERRORS_KEPT, MAX_FIELD_JSON_CHARS, json_chars
from shared.ledger.parts import errors_to_json
from shared.notify import WebhookSender, owe
from shared.runs import RunStore
from shared.services.delivery import deliver_owed
from shared.services.sweep import Deadline
from shared.settings import Settings
from shared.states import RunState
from tests.configs import config_bytes
from tests.fakes import FakePlatform, make_store
from tests.functional.shared.receiver import Receiver
from tests.functional.shared.test_functions import user_function

UNKNOWN_KEYS = 150


def over_one_mib() -> bytes:
    return config_bytes() + b"\n# " + b"x" * (1024 * 1024)


def many_long_unknown_keys(**sections: object) -> bytes:
    lines = b"".join(b"\nunknown_%03d_%s: 1" % (i, b"y" * 200) for i in range(UNKNOWN_KEYS))
    return config_bytes(**sections) + lines


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def store(use_runtime) -> RunStore:  # type: ignore[no-untyped-def]
    store, _, _ = make_store(owe=owe)
    use_runtime(Settings.from_env({"AUTOPILOT_PLATFORM": "local"}), store=store, platform=FakePlatform(store.clock))
    return store


def upload(name: str, data: bytes) -> None:
    blob = InputStream(data=data, name=f"training-configs/{name}", uri=f"http://x/{name}", length=len(data))
    user_function("submit")(blob)


def test_a_file_over_one_mib_is_rejected_with_its_size(store: RunStore) -> None:
    upload("big.yaml", over_one_mib())
    (record,) = store.list()
    assert record.state == RunState.REJECTED
    assert "the limit is 1048576 (1 MiB)" in record.errors[0].message
    assert store.status.read("big.yaml.json")["state"] == "rejected"  # type: ignore[index]


def test_so_many_errors_that_they_would_not_fit_the_run_are_summarised(store: RunStore) -> None:
    upload("unknown.yaml", many_long_unknown_keys())
    (record,) = store.list()
    assert record.state == RunState.REJECTED and record.last_error_code == "InvalidConfig"
    shown, last = record.errors[:-1], record.errors[-1]
    assert 0 < len(shown) <= MAX_ERRORS_KEPT
    assert all(e.path.startswith("unknown_") and "unknown key" in e.message for e in shown)
    assert last.message.startswith(f"{UNKNOWN_KEYS - len(shown)} more problem(s) not shown ({UNKNOWN_KEYS} in all)")
    assert json_chars(errors_to_json(record.errors)) <= MAX_FIELD_JSON_CHARS
    assert store.status.read("unknown.yaml.json")["errors"][-1]["message"] == last.message  # type: ignore[index]


def test_the_summarised_rejection_still_reaches_the_configs_receiver(store: RunStore, receiver: Receiver) -> None:
    upload("unknown-notify.yaml", many_long_unknown_keys(notify={"webhooks": [receiver.url]}))
    (record,) = store.list()
    assert record.state == RunState.REJECTED and record.notify is not None
    deliver_owed(store, {"webhook": WebhookSender("notify-key", allow_private=True)}, deadline=Deadline(60))
    [rejected] = receiver.delivered()
    assert rejected["type"] == "autopilot.run.rejected" and rejected["run_id"] == record.run_id
