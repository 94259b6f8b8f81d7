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


def test_nested_fields_round_trip(ledger: TableLedger) -> None:
    run = record("phi3-00000009")
    run.rollout = {"role": "canary", "percent": 10, "canary": {"requests": 3, "errors": 0}}
    run.approval = {"decision": "approved", "by": "ana", "at": "2026-11-01T00:00:00+00:00", "reason": ""}
    run.notify = {"webhooks": ["https://example.org/hook"], "events": None}
    ledger.create(run)
    again = ledger.get("phi3-00000009")
    assert again is not None
    assert (again.rollout, again.approval, again.notify) == (run.rollout, run.approval, run.notify)
    again.rollout = None
    ledger.replace(again)
    assert ledger.get("phi3-00000009").rollout is None  # type: ignore[union-attr]


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


def at(run_id: str, minute: int, state: RunState = RunState.RECEIVED) -> RunRecord:
    r = record(run_id)
    r.created_at = r.updated_at = datetime(2026, 11, 1, 12, minute, tzinfo=UTC)
    r.state = state
    return r


def test_the_active_index_follows_each_write(ledger: TableLedger) -> None:
    for i in range(3):
        ledger.create(at(f"r-{i:08d}", i))
    assert sorted(e.run_id for e in ledger.active()) == ["r-00000000", "r-00000001", "r-00000002"]
    r = ledger.get("r-00000001")
    assert r
    r.state = RunState.SUBMITTED
    ledger.replace(r)  # still active: still indexed
    r.state = RunState.FAILED
    ledger.replace(r)  # terminal: leaves the index
    assert sorted(e.run_id for e in ledger.active()) == ["r-00000000", "r-00000002"]
    assert ledger.get("r-00000001") is not None  # finished runs stay readable by id
    assert ledger.recent(2) == ["r-00000002", "r-00000001"] and ledger.recent(5, skip=2) == ["r-00000000"]


def test_a_claim_is_an_etag_write_so_two_sweeps_never_both_win(ledger: TableLedger) -> None:
    ledger.create(at("r-00000001", 0))
    (entry,) = ledger.active()
    now = datetime(2026, 11, 1, 13, 0, tzinfo=UTC)
    later = datetime(2026, 11, 1, 13, 5, tzinfo=UTC)
    assert ledger.claim(entry, now, later)
    assert not ledger.claim(entry, now, later)  # the same stale copy: the ETag moved on
    (held,) = ledger.active()
    assert held.handled_at == now and held.lease_until == later
    assert not ledger.claim(held, now, later)  # fresh copy, but the lease is still held
    ledger.release("r-00000001")
    (free,) = ledger.active()
    assert free.lease_until is None and free.handled_at == now and ledger.claim(free, later, later)


def test_a_table_written_before_the_indexes_is_indexed_on_first_use(azurite: str) -> None:
    name = f"runs{uuid.uuid4().hex[:12]}"
    old = TableLedger(azurite, name)
    old.create(at("a-00000001", 1, RunState.RUNNING))
    old.create(at("b-00000002", 2, RunState.DEPLOYED))
    old.create(at("c-00000003", 3, RunState.DELETED))
    # Strip what the indexed layout adds: what a table written by the previous release looks like.
    for entity in list(old.table.query_entities("PartitionKey ne 'run'")):
        old.table.delete_entity(entity["PartitionKey"], entity["RowKey"])
    assert [e["RowKey"] for e in old.table.query_entities("PartitionKey ne 'run'")] == []

    migrated = TableLedger(azurite, name)
    assert sorted(e.run_id for e in migrated.active()) == ["a-00000001", "b-00000002"]
    assert migrated.recent(10) == ["c-00000003", "b-00000002", "a-00000001"]
    # Once: a second process sees the marker and does not scan again.
    again = TableLedger(azurite, name)
    scans: list[object] = []
    again.build_indexes = lambda: scans.append(1) or 0  # type: ignore[method-assign]
    assert sorted(e.run_id for e in again.active()) == ["a-00000001", "b-00000002"] and scans == []


def test_import_records_writes_runs_and_indexes_in_batches(ledger: TableLedger) -> None:
    records = [at(f"r-{i:08d}", i % 60, RunState.CANCELED if i % 10 else RunState.RUNNING) for i in range(250)]
    assert ledger.import_records(records) == 250
    assert len(ledger.list()) == 250
    assert sorted(e.run_id for e in ledger.active()) == [f"r-{i:08d}" for i in range(0, 250, 10)]
    assert ledger.get("r-00000042") is not None


def test_runs_of_a_config_are_a_key_range(ledger: TableLedger) -> None:
    for run in ("phi3-00000001", "phi3-00000002", "phi3-chat-00000003", "phi4-00000004"):
        ledger.create(at(run, 0))
    assert [r.run_id for r in ledger.with_prefix("phi3-")] == ["phi3-00000001", "phi3-00000002", "phi3-chat-00000003"]
    assert [r.run_id for r in ledger.with_prefix("phi4")] == ["phi4-00000004"]
    assert ledger.with_prefix("phi5") == []
