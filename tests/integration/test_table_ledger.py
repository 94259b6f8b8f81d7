"""The ledger and status store on real Azurite: ETag concurrency, queries by state, the status mirror."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from shared.exceptions import AlreadyExistsError, ConcurrencyError
from shared.ledger.record import RunRecord
from shared.ledger.table import TableLedger
from shared.runs import RunStore
from shared.states import RunState
from shared.status import BlobStatusStore

pytestmark = pytest.mark.azurite


def record(run_id: str) -> RunRecord:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    return RunRecord(
        run_id=run_id,
        state=RunState.RECEIVED,
        config_blob="phi3.yaml",
        config_name="phi3",
        created_at=now,
        updated_at=now,
        effective_params={"learning_rate": {"value": 5e-6, "source": "config"}},
        timeline={"received": now.isoformat()},
    )


@pytest.fixture
def ledger(azurite: str) -> TableLedger:
    return TableLedger(azurite, f"runs{uuid.uuid4().hex[:12]}")


def test_round_trip_and_etag_conflict(ledger: TableLedger) -> None:
    stored = ledger.create(record("phi3-00000001"))
    assert stored.etag and stored.effective_params == {"learning_rate": {"value": 5e-6, "source": "config"}}
    with pytest.raises(AlreadyExistsError):
        ledger.create(record("phi3-00000001"))
    first, second = ledger.get("phi3-00000001"), ledger.get("phi3-00000001")
    assert first and second
    first.state = RunState.SUBMITTED
    ledger.replace(first)
    second.state = RunState.REJECTED
    with pytest.raises(ConcurrencyError):
        ledger.replace(second)
    again = ledger.get("phi3-00000001")
    assert again and again.state == RunState.SUBMITTED and again.created_at == first.created_at


def test_list_by_state(ledger: TableLedger) -> None:
    for i in range(3):
        ledger.create(record(f"r-{i:08d}"))
    r = ledger.get("r-00000001")
    assert r
    r.state = RunState.SUBMITTED
    ledger.replace(r)
    assert [x.run_id for x in ledger.list([RunState.SUBMITTED])] == ["r-00000001"]
    assert len(ledger.list()) == 3
    assert ledger.get("missing") is None


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
