"""Every command on a deployment reads its settings through one loader (autopilot/settings.py): here
``status`` finds a run in the ledger a checkout's files name (local.settings.json's storage, the azd
environment's table), with nothing in the process environment, against Azurite."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from autopilot.main import main
from shared.ledger.table import TableLedger
from shared.runs import RunStore
from shared.status import BlobStatusStore

pytestmark = pytest.mark.azurite

CLEARED = (
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__accountName",
    "AUTOPILOT_LEDGER_TABLE",
    "AUTOPILOT_STATUS_CONTAINER",
    "AUTOPILOT_PLATFORM",
    "AZUREML_WORKSPACE_NAME",
)


def test_status_reads_the_ledger_the_checkout_names(
    azurite: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    suffix = uuid.uuid4().hex[:10]
    table, container = f"clirunsazd{suffix}", f"cli-status-azd-{suffix}"
    (tmp_path / "azure.yaml").write_text("name: fine-tune-autopilot\n")
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"AzureWebJobsStorage": azurite}}))
    (tmp_path / ".azure" / "dev").mkdir(parents=True)
    (tmp_path / ".azure" / "config.json").write_text('{"version": 1, "defaultEnvironment": "dev"}')
    (tmp_path / ".azure" / "dev" / ".env").write_text(
        f'AZURE_ENV_NAME="dev"\nAUTOPILOT_LEDGER_TABLE="{table}"\nAUTOPILOT_STATUS_CONTAINER="{container}"\n'
    )
    monkeypatch.setenv("AUTOPILOT_PROJECT_DIR", str(tmp_path))
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    run = f"checkout-{suffix[:8]}"
    store = RunStore(TableLedger(azurite, table), BlobStatusStore(azurite, container))
    store.create(
        run, config_blob="checkout.yaml", config_name="checkout", content=b"x", config_etag=None, platform="local"
    )

    assert main(["status"]) == 0
    assert run in capsys.readouterr().out
    assert main(["status", run, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == run
