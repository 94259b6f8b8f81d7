"""The control plane on real Azurite, driven through the local host: blob polling, the Event Grid webhook and
timers call the real functions of ``function_app``; only the ML platform is the stateful fake."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from starlette.testclient import TestClient

import function_app
from local.host.host import LocalHost
from shared import runtime
from shared.runs import RunStore
from shared.states import RunState
from tests.configs import config_bytes
from tests.conftest import StorageEnv
from tests.eventdata import load_event
from tests.fakes import FakePlatform, die_entering

pytestmark = [pytest.mark.azurite, pytest.mark.integration]
WEBHOOK = "/runtime/webhooks/EventGrid"


class Plane:
    def __init__(self, env: StorageEnv, host: LocalHost, platform: FakePlatform) -> None:
        self.env = env
        self.host = host
        self.platform = platform
        self.client = TestClient(host.webhook_app)
        self.configs = ContainerClient.from_connection_string(env.connection_string, env.config_container)
        if not self.configs.exists():
            self.configs.create_container()

    @property
    def store(self) -> RunStore:
        return runtime.run_store()

    def drop(self, name: str, data: bytes) -> None:
        self.configs.upload_blob(name, data, overwrite=True)

    def post(self, function: str, events: Any, *, key: str | None = None, event_type: str = "Notification"):  # type: ignore[no-untyped-def]
        headers = {"aeg-event-type": event_type, "x-functions-key": key or self.env.webhook_key}
        return self.client.post(f"{WEBHOOK}?functionName={function}", json=events, headers=headers)

    def only_run(self):  # type: ignore[no-untyped-def]
        (record,) = self.store.list()
        return record


@pytest.fixture
def plane(storage_env: StorageEnv, use_runtime: Any) -> Plane:
    platform = FakePlatform()
    use_runtime(platform=platform)
    host = LocalHost(function_app.app, runtime.settings(), host_id=f"test-{storage_env.ledger_table[-10:]}")
    return Plane(storage_env, host, platform)


def test_dropped_config_is_submitted_with_ledger_and_status_blob(plane: Plane) -> None:
    plane.drop("phi3.yaml", config_bytes())
    (invocation,) = plane.host.poll_once()
    assert invocation.succeeded, invocation.error
    record = plane.only_run()
    assert record.state == RunState.SUBMITTED and record.config_etag
    status = ContainerClient.from_connection_string(plane.env.connection_string, plane.env.status_container)
    doc = json.loads(status.download_blob("phi3.yaml.json").readall())
    assert doc["state"] == "submitted" and doc["run_id"] == record.run_id
    assert plane.host.poll_once() == []  # the receipt is in storage: no second firing


def test_same_config_three_times_and_shuffled_duplicate_events_make_one_of_each(plane: Plane) -> None:
    for _ in range(3):  # each upload is a new ETag, so the trigger fires each time
        plane.drop("phi3.yaml", config_bytes())
        plane.host.poll_once()
    record = plane.only_run()
    assert len(plane.platform.jobs) == 1
    plane.platform.finish_job(record.run_id)

    run_events = [
        load_event("run_status_changed_camel", RUN_ID=record.run_id),
        load_event("run_completed_pascal", RUN_ID=record.run_id),
    ] * 2
    random.Random(3).shuffle(run_events)
    for event in run_events:
        assert plane.post("register", [event]).status_code == 200
    registered = plane.store.get(record.run_id)
    assert registered and registered.state == RunState.REGISTERED
    model_event = load_event(
        "model_registered_camel",
        RUN_ID=record.run_id,
        MODEL_NAME=registered.model_name or "",
        MODEL_VERSION=registered.model_version or "",
    )
    assert plane.post("deploy", [model_event, model_event]).status_code == 200
    plane.platform.complete_deployments()
    assert plane.host.fire_timer("reconcile").succeeded
    assert plane.host.fire_timer("reconcile").succeeded
    final = plane.store.get(record.run_id)
    assert final and final.state == RunState.DEPLOYED
    assert (len(plane.platform.jobs), len(plane.platform.registered), len(plane.platform.endpoints)) == (1, 1, 1)


def test_handler_killed_after_side_effect_converges_on_redelivery(
    plane: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    die_entering(monkeypatch, RunState.SUBMITTED, error=RuntimeError("worker died"), times=1)
    plane.drop("phi3.yaml", config_bytes())
    (first,) = plane.host.poll_once()
    assert not first.succeeded and len(plane.platform.jobs) == 1
    assert plane.only_run().state == RunState.RECEIVED
    (second,) = plane.host.poll_once()  # the failed blob is retried on the next poll
    assert second.succeeded
    assert plane.only_run().state == RunState.SUBMITTED and len(plane.platform.jobs) == 1


@pytest.mark.parametrize(
    ("name", "data", "fragment"),
    [
        ("broken.yaml", b"model: {name: x\n", "invalid YAML"),
        ("big.yaml", b"# " + b"x" * (1024 * 1024), "limit"),
        ("bomb.yaml", b'a: &a ["x","x"]\nb: [*a,*a]\n', "aliases"),
        ("latin1.yaml", "modèle: 1\n".encode("latin-1"), "UTF-8"),
        ("odd name?.yaml", config_bytes(), "may contain only"),
    ],
)
def test_bad_files_are_rejected_not_retried(plane: Plane, name: str, data: bytes, fragment: str) -> None:
    plane.drop(name, data)
    (invocation,) = plane.host.poll_once()
    assert invocation.succeeded  # a rejection is an outcome, not a failure to retry
    record = plane.only_run()
    assert record.state == RunState.REJECTED
    assert fragment in " ".join(e.message for e in record.errors)
    assert not plane.platform.jobs


def test_a_submit_that_keeps_failing_ends_failed_with_the_reason(plane: Plane) -> None:
    from shared.exceptions import TransientPlatformError

    class AlwaysThrottled(FakePlatform):
        def submit_job(self, request):  # type: ignore[no-untyped-def]
            raise TransientPlatformError("throttled", "429")

    plane.platform.__class__ = AlwaysThrottled
    plane.drop("phi3.yaml", config_bytes())
    outcomes = [inv.succeeded for _ in range(7) for inv in plane.host.poll_once()]
    # Four retried failures, then the service spends its budget and ends the run failed (a handled outcome),
    # so the blob never needs the poison queue and the person who dropped it sees why.
    assert outcomes == [False] * 4 + [True]
    record = plane.only_run()
    assert record.state == RunState.FAILED and "could not submit after 5 tries" in record.errors[0].message
    assert record.last_error_code == "429" and plane.platform.__class__ is AlwaysThrottled


def test_webhook_entry_refuses_bad_requests(plane: Plane) -> None:
    event = load_event("run_completed_pascal", RUN_ID="x-00000000")
    assert plane.post("register", [event], key="wrong").status_code == 401
    no_key = plane.client.post(
        f"{WEBHOOK}?functionName=register", json=[event], headers={"aeg-event-type": "Notification"}
    )
    assert no_key.status_code == 401
    assert plane.post("nope", [event]).status_code == 400
    bad_json = plane.client.post(
        f"{WEBHOOK}?functionName=register",
        content=b"{not json",
        headers={"aeg-event-type": "Notification", "x-functions-key": plane.env.webhook_key},
    )
    assert bad_json.status_code == 400
    # An event the parser refuses is answered 400 by the local host (Event Grid does not retry a 400; on Azure
    # the function drops it with a log line): nothing reaches the ledger either way.
    broken = load_event("run_completed_pascal", RUN_ID="x")
    del broken["data"]["RunId"]
    assert plane.post("register", [broken]).status_code == 400
    assert plane.store.list() == []


def test_subscription_validation_handshake(plane: Plane) -> None:
    validation = [
        {
            "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
            "topic": "/subscriptions/x",
            "subject": "",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": "2026-11-01T12:00:00Z",
            "dataVersion": "1",
        }
    ]
    response = plane.post("register", validation, event_type="SubscriptionValidation")
    assert response.status_code == 200
    assert response.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}


def test_a_function_that_keeps_crashing_lands_in_the_poison_queue(
    plane: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy

    def broken_storage(*args: object, **kwargs: object) -> None:
        raise ConnectionError("table storage unreachable")

    monkeypatch.setattr(RunStore, "create", broken_storage)
    plane.drop("crashy.yaml", config_bytes())
    outcomes = [inv.succeeded for _ in range(7) for inv in plane.host.poll_once()]
    assert outcomes == [False] * 5
    queue = QueueClient.from_connection_string(
        plane.env.connection_string, "webjobs-blobtrigger-poison", message_decode_policy=TextBase64DecodePolicy()
    )
    messages = [json.loads(m.content) for m in queue.receive_messages(max_messages=32)]
    assert any(m.get("BlobName") == "crashy.yaml" for m in messages)
