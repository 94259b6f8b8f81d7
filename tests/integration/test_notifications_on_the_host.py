"""Durable notifications on the local host over Azurite (issue 22, What to build 1): the host's blob poller runs
the app's submit, which only records what the rejection owes in the table ledger; the app's own
``deliver_notifications`` timer, fired by the host's scheduler, sends it, signed (checked with the stock
``standardwebhooks`` verifier). Two workers racing on the table's ETags send each notification once."""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING

import pytest
from azure.storage.blob import ContainerClient
from standardwebhooks import Webhook

import function_app
from local.host.blobpoller import BlobPoller
from local.host.discovery import discover
from local.host.timers import TimerScheduler
from shared import runtime
from shared.ledger.table import TableLedger
from shared.notify import owe
from shared.notify_signing import receiver_secret
from shared.runs import RunStore
from shared.services.delivery import deliver_owed
from shared.services.sweep import Deadline
from shared.settings import Settings
from shared.states import RunState
from shared.status import BlobStatusStore
from tests.configs import config_bytes
from tests.fakes import FakePlatform
from tests.functional.shared.receiver import Receiver

if TYPE_CHECKING:
    from tests.conftest import StorageEnv

pytestmark = pytest.mark.azurite
KEY = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGhlLWludGVncmF0aW9uLXRlc3Q="


def host_runtime(storage_env: StorageEnv, monkeypatch: pytest.MonkeyPatch) -> RunStore:
    monkeypatch.setenv("AUTOPILOT_NOTIFY_SIGNING_KEY", KEY)
    monkeypatch.setenv("AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES", "true")  # the receiver is on loopback
    conn = storage_env.connection_string
    store = RunStore(TableLedger(conn, storage_env.ledger_table), BlobStatusStore(conn, storage_env.status_container))
    store.owe = owe  # as shared.runtime.build_store wires it
    runtime.install(runtime.bootstrap(Settings.from_env(), store=store, platform=FakePlatform()))
    return store


def upload(storage_env: StorageEnv, blobs: dict[str, bytes]) -> None:
    container = ContainerClient.from_connection_string(storage_env.connection_string, storage_env.config_container)
    if not container.exists():
        container.create_container()
    for name, data in blobs.items():
        container.upload_blob(name, data)
    conn = storage_env.connection_string
    poller = BlobPoller(
        discover(function_app.app).blob,
        host_connection=conn,
        resolve_connection=lambda _: conn,
        host_id=f"test-{uuid.uuid4().hex[:8]}",
    )
    assert all(o.succeeded for o in poller.poll_once())


def rejected_config(receiver: Receiver) -> bytes:
    return config_bytes(training={"learning_rate": -1}, notify={"webhooks": [receiver.url]})


def test_the_hosts_timer_delivers_what_the_submit_only_recorded(
    storage_env: StorageEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver()
    try:
        store = host_runtime(storage_env, monkeypatch)
        upload(storage_env, {"bad.yaml": rejected_config(receiver)})
        (run,) = store.list()
        assert run.state == RunState.REJECTED and receiver.received == []  # recorded, not sent
        assert [e.run_id for e in store.ledger.owing()] == [run.run_id]

        timers = TimerScheduler(discover(function_app.app).timer)
        assert timers.fire("deliver_notifications").succeeded
        assert timers.fire("deliver_notifications").succeeded  # nothing more to send

        (got,) = receiver.received
        body = Webhook(receiver_secret(KEY)).verify(got["body"], got["headers"])
        assert body["type"] == "autopilot.run.rejected" and got["headers"]["webhook-id"] == f"{run.run_id}:rejected"
        stored = store.get(run.run_id)
        assert stored is not None and not stored.outbox.owing
        document = store.status.read(f"_runs/{run.run_id}.json")
        assert document is not None and document["notifications"][0]["deliveries"][0]["state"] == "delivered"
    finally:
        receiver.stop()


def test_two_workers_racing_on_the_table_send_each_notification_once(
    storage_env: StorageEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver()
    try:
        store = host_runtime(storage_env, monkeypatch)
        upload(storage_env, {f"bad{i}.yaml": rejected_config(receiver) for i in range(6)})
        assert len(store.ledger.owing()) == 6
        senders = runtime.senders()
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                start.wait(30)
                deliver_owed(store, senders, deadline=Deadline(60), concurrency=3)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        ids = sorted(r["headers"]["webhook-id"] for r in receiver.received)
        assert len(ids) == 6 and len(set(ids)) == 6  # however the claims interleaved: each once
        assert all(not r.outbox.owing for r in store.list())
    finally:
        receiver.stop()
