"""The local host's path for oversized uploads (issue 22, finding 4): its blob poller fires the app's own submit
function over Azurite, and the runs land in the table ledger, which holds each JSON field to the Azure Table
property limit. A file over 1 MiB and a config whose errors would not fit the run are both rejected with their
reasons; none stays ``received``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from azure.storage.blob import ContainerClient

import function_app
from local.host.blobpoller import BlobPoller
from local.host.discovery import discover
from shared import runtime
from shared.ledger.table import TableLedger
from shared.runs import RunStore
from shared.settings import Settings
from shared.states import RunState
from shared.status import BlobStatusStore
from tests.fakes import FakePlatform
from tests.functional.shared.test_oversized_configs import UNKNOWN_KEYS, many_long_unknown_keys, over_one_mib

if TYPE_CHECKING:
    from tests.conftest import StorageEnv

pytestmark = pytest.mark.azurite


def test_the_hosts_blob_trigger_rejects_oversized_uploads_with_their_reasons(storage_env: StorageEnv) -> None:
    conn = storage_env.connection_string
    ledger = TableLedger(conn, storage_env.ledger_table)
    store = RunStore(ledger, BlobStatusStore(conn, storage_env.status_container))
    runtime.install(runtime.bootstrap(Settings.from_env(), store=store, platform=FakePlatform()))
    container = ContainerClient.from_connection_string(conn, storage_env.config_container)
    if not container.exists():
        container.create_container()
    container.upload_blob("big.yaml", over_one_mib())
    container.upload_blob("unknown.yaml", many_long_unknown_keys())
    poller = BlobPoller(
        discover(function_app.app).blob,
        host_connection=conn,
        resolve_connection=lambda _: conn,
        host_id=f"test-{uuid.uuid4().hex[:8]}",
    )

    outcomes = poller.poll_once()

    assert [o.succeeded for o in outcomes] == [True, True]  # nothing for the poller to retry or poison
    runs = {r.config_blob: r for r in store.list()}
    assert {name: r.state for name, r in runs.items()} == {
        "big.yaml": RunState.REJECTED,
        "unknown.yaml": RunState.REJECTED,
    }
    assert "(1 MiB)" in runs["big.yaml"].errors[0].message
    assert f"({UNKNOWN_KEYS} in all)" in runs["unknown.yaml"].errors[-1].message
    assert [e.run_id for e in ledger.active()] == []  # both finished: out of the active index
