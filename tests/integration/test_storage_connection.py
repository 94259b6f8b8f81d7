"""The ledger, status blobs, config upload and the host's blob polling on a StorageConnection, against Azurite.

The identity-based path needs Azure (a token for a real account); its client construction is unit-tested in
tests/unit/shared/test_storage_connection.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from local.host.discovery import discover
from local.host.host import LocalHost
from shared.ledger.record import RunRecord
from shared.ledger.table import TableLedger
from shared.settings import Settings
from shared.states import RunState
from shared.status import BlobStatusStore
from shared.storage import StorageConnection, upload_config

pytestmark = pytest.mark.azurite


def test_ledger_and_status_run_on_the_settings_connection(azurite: str) -> None:
    storage = Settings.from_env({"AzureWebJobsStorage": azurite}).storage()
    assert not storage.uses_identity
    suffix = uuid.uuid4().hex[:8]
    ledger = TableLedger(storage, f"ledger{suffix}")
    now = datetime.now(UTC)
    record = RunRecord(
        run_id=f"conn-{suffix}",
        state=RunState.RECEIVED,
        config_blob="conn.yaml",
        config_name="conn",
        created_at=now,
        updated_at=now,
    )
    created = ledger.create(record)
    assert ledger.get(created.run_id) is not None
    status = BlobStatusStore(storage, f"status-{suffix}")
    status.write("conn.json", {"state": "received"})
    assert status.read("conn.json") == {"state": "received"}


def test_the_host_polls_a_blob_trigger_on_a_named_connection(azurite: str) -> None:
    container = f"named-{uuid.uuid4().hex[:8]}"
    seen: list[str] = []
    app = func.FunctionApp()

    @app.function_name("on_named")
    @app.blob_trigger(arg_name="blob", path=f"{container}/{{name}}", connection="OtherStorage")
    def on_named(blob: func.blob.InputStream) -> None:
        seen.append(blob.name or "")

    env: dict[str, Any] = {"AzureWebJobsStorage": azurite, "OtherStorage": azurite, "AUTOPILOT_WEBHOOK_KEY": "k"}
    host = LocalHost(app, Settings.from_env(env), env=env, host_id=f"h-{uuid.uuid4().hex[:8]}")
    assert discover(app).blob
    upload_config(StorageConnection.from_settings("OtherStorage", env), container, "a.yaml", b"x: 1\n")
    host.poll_once()
    assert seen == [f"{container}/a.yaml"]


def test_a_named_connection_without_settings_is_a_clear_error(azurite: str) -> None:
    from local.common.exceptions import HostConfigError

    app = func.FunctionApp()

    @app.function_name("on_missing")
    @app.blob_trigger(arg_name="blob", path="c/{name}", connection="Missing")
    def on_missing(blob: func.blob.InputStream) -> None:
        pass

    env = {"AzureWebJobsStorage": azurite, "AUTOPILOT_WEBHOOK_KEY": "k"}
    with pytest.raises(HostConfigError, match=r"Missing is not set: .*Missing__accountName"):
        LocalHost(app, Settings.from_env(env), env=env)
