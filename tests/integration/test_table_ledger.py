"""What only the Azure Table ledger has, on real Azurite: its stored form, batch imports, and the status mirror
over a real blob container. What every ledger promises is in tests/functional/shared/test_ledger_contract.py,
run on this ledger and on the in-memory one."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from shared.ledger.parts import Approval
from shared.ledger.record import RECORD_SCHEMA, RunRecord
from shared.ledger.table import PARTITION, TableLedger
from shared.runs import RunStore
from shared.states import RunState
from shared.status import BlobStatusStore

pytestmark = pytest.mark.azurite


def at(run_id: str, minute: int, state: RunState = RunState.RECEIVED) -> RunRecord:
    now = datetime(2026, 11, 1, 12, minute, tzinfo=UTC)
    return RunRecord(run_id, state, "phi3.yaml", "phi3", now, now, timeline={"received": now.isoformat()})


@pytest.fixture
def ledger(azurite: str) -> TableLedger:
    return TableLedger(azurite, f"runs{uuid.uuid4().hex[:12]}")


def test_a_run_is_one_entity_with_its_schema_version_and_its_parts_as_json_text(ledger: TableLedger) -> None:
    record = at("phi3-00000001", 0)
    record.approval = Approval("approved", "ana", record.created_at, "")
    ledger.create(record)
    entity = ledger.table.get_entity(PARTITION, "phi3-00000001")
    assert entity["schema_version"] == RECORD_SCHEMA and entity["state"] == "received"
    assert json.loads(entity["approval"]) == {
        "decision": "approved",
        "by": "ana",
        "at": "2026-11-01T12:00:00+00:00",
        "reason": "",
    }
    assert "rollout" in entity and json.loads(entity["rollout"]) is None


def test_store_mirrors_status_blob(ledger: TableLedger, azurite: str) -> None:
    status = BlobStatusStore(azurite, f"status{uuid.uuid4().hex[:12]}")
    store = RunStore(ledger, status)
    store.create(
        "phi3-0000000a",
        config_blob="team/phi3.yaml",
        config_name="team-phi3",
        content=b"x",
        config_etag=None,
        platform="fake",
    )
    store.advance("phi3-0000000a", RunState.SUBMITTED, lambda r: setattr(r, "job_name", "phi3-0000000a"))
    assert store.advance("phi3-0000000a", RunState.RECEIVED) is None  # backward: ignored
    doc = status.read("team/phi3.yaml.json")
    assert status.read("_runs/phi3-0000000a.json") == {k: v for k, v in doc.items() if k not in ("latest_run", "runs")}
    assert doc and doc["state"] == "submitted" and doc["job"]["name"] == "phi3-0000000a"
    assert list(doc["timeline"]) == ["received", "submitted"]


def test_import_records_writes_runs_and_indexes_in_batches(ledger: TableLedger) -> None:
    records = [at(f"r-{i:08d}", i % 60, RunState.CANCELED if i % 10 else RunState.RUNNING) for i in range(250)]
    assert ledger.import_records(records) == 250
    assert len(ledger.list()) == 250
    assert sorted(e.run_id for e in ledger.active()) == [f"r-{i:08d}" for i in range(0, 250, 10)]
    assert ledger.get("r-00000042") is not None
    assert ledger.recent(1) == ["r-00000059"]
