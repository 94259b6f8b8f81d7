"""The ledger port's contract, one suite run on both implementations: ``InMemoryLedger`` (tests/fakes.py), which
almost every service test uses, and ``TableLedger`` on a real Azurite. A behaviour the services rely on that the
fake has and the table lacks (or the other way round) fails here, not in a scenario test."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.config.model import NotifySection
from shared.config.params import Param
from shared.exceptions import AlreadyExistsError, ConcurrencyError, FieldIssue
from shared.ledger.limits import MAX_PROPERTY_CHARS
from shared.ledger.outbox import Attempt, Delivery, Outbox, OwedEvent
from shared.ledger.parts import Actor, Approval, Canary, Health, Observed, Rollout, SmokeTest
from shared.ledger.port import Ledger
from shared.ledger.record import RecordSchemaError, RunRecord
from shared.runs import RunStore
from shared.states import RolloutPhase, RunState
from tests.configs import training_config
from tests.fakes import FakeClock, InMemoryLedger, InMemoryStatusStore

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Backend:
    """A ledger, and what another process could do to its storage behind its back."""

    ledger: Ledger
    lose: Callable[[str], None]  # the run's row is deleted
    set_stored: Callable[[str, str, Any], None]  # one stored property of the run is rewritten


def memory_backend(request: pytest.FixtureRequest) -> Backend:
    ledger = InMemoryLedger()

    def set_stored(run_id: str, key: str, value: Any) -> None:
        ledger._rows[run_id][1][key] = value

    return Backend(ledger, ledger.lose, set_stored)


def table_backend(request: pytest.FixtureRequest) -> Backend:
    from azure.data.tables import UpdateMode

    from shared.ledger.table import PARTITION, TableLedger

    ledger = TableLedger(request.getfixturevalue("azurite"), f"runs{uuid.uuid4().hex[:12]}")

    def lose(run_id: str) -> None:
        ledger.table.delete_entity(PARTITION, run_id)

    def set_stored(run_id: str, key: str, value: Any) -> None:
        ledger.table.update_entity({"PartitionKey": PARTITION, "RowKey": run_id, key: value}, mode=UpdateMode.MERGE)

    return Backend(ledger, lose, set_stored)


@pytest.fixture(params=[pytest.param("memory"), pytest.param("table", marks=pytest.mark.azurite)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return memory_backend(request) if request.param == "memory" else table_backend(request)


@pytest.fixture
def ledger(backend: Backend) -> Ledger:
    return backend.ledger


def run(run_id: str, minute: int = 0, state: RunState = RunState.RECEIVED) -> RunRecord:
    at = T0 + timedelta(minutes=minute)
    return RunRecord(run_id, state, f"{run_id}.yaml", run_id, at, at, timeline={"received": at.isoformat()})


def full_run(run_id: str) -> RunRecord:
    """A run with every field and every typed part set, as a canary that was observed and rolled back."""
    at = [(T0 + timedelta(minutes=m)) for m in range(6)]
    observed = Observed(50, 1, 0.02, True)
    canary = Canary(
        "ft-line",
        "d-old",
        "line-00000001",
        20,
        RolloutPhase.ROLLED_BACK,
        started_at=at[3],
        observe_until=at[5],
        canary_seen=observed,
        previous_seen=Observed(0, 0, 0.0, False),
        reason="rolled back",
        ended_at=at[4],
        rolled_back=Actor("ana", at[4]),
    )
    return RunRecord(
        run_id=run_id,
        state=RunState.DEPLOY_FAILED,
        config_blob="team/line v2.yaml",
        config_name="team-line-v2",
        created_at=at[0],
        updated_at=at[4],
        config_etag='"0x8D"',
        config_sha256="ab" * 32,
        platform="fake",
        config=training_config(notify={"webhooks": ["https://example.org/hook"], "events": ["deployed"]}),
        effective_params={
            "learning_rate": Param(5e-6, "config"),
            "lora_r": Param(8, "model"),
            "x": Param(None, "default"),
        },
        notes=["one", "two: with ünïcode"],
        job_name=run_id,
        experiment_name="chat_completion_phi",
        job_status="Completed",
        model_name="phi-line",
        model_version="3",
        endpoint_name="ft-line",
        deployment_name="d-new",
        inference_instance_type="Standard_NC24ads_A100_v4",
        scoring_uri="https://ft-line.example/score",
        metrics={"eval_loss_before": 1.5, "eval_loss_after": 1.25},
        history=[{"step": 1.0, "loss": 2.5}, {"step": 2.0, "loss": 2.0, "validation_loss": 2.25}],
        smoke_test=SmokeTest({"input_data": {"input_string": [[{"role": "user", "content": "hi"}]]}}, "hello", at[3]),
        timeline={s: at[i].isoformat() for i, s in enumerate(("received", "submitted", "deploying", "canary"))}
        | {"deploy_failed": at[4].isoformat()},
        errors=[FieldIssue("deployment", "rolled back by ana"), FieldIssue("", "no path")],
        last_error_code="RolledBack",
        attempts={"submit": 2},
        health=Health(2, at[2]),
        notify=NotifySection(webhooks=["https://example.org/other"]),
        approval=Approval("approved", "ben", at[1], "eval loss is fine"),
        rollout=Rollout(canary, replaced_by="line-00000009", retire_after=at[4], deployment_deleted_at=at[5]),
        outbox=Outbox(
            (
                OwedEvent(
                    f"{run_id}:deploy_failed",
                    "deploy_failed",
                    at[4],
                    {"id": f"{run_id}:deploy_failed", "state": "deploy_failed"},
                    (
                        Delivery(
                            "webhook:0",
                            "https://example.org/other",
                            tries=2,
                            due_at=at[5],
                            attempts=(Attempt(at[4], "HTTP 503", 503, at[5]),),
                        ),
                        Delivery("event_grid", "Event Grid topic", "failed", 1, reason="refused", settled_at=at[4]),
                    ),
                ),
            )
        ),
    )


# -- create -------------------------------------------------------------------------------------------------


def test_create_returns_the_stored_run_and_a_second_create_is_refused(ledger: Ledger) -> None:
    stored = ledger.create(run("r-00000001"))
    assert stored.etag and stored.run_id == "r-00000001" and stored.state == RunState.RECEIVED
    with pytest.raises(AlreadyExistsError):
        ledger.create(replace(run("r-00000001"), config_blob="other.yaml"))
    again = ledger.get("r-00000001")
    assert again is not None and again.config_blob == "r-00000001.yaml" and again.etag == stored.etag
    assert ledger.get("r-missing") is None


def test_a_redelivered_finished_run_leaves_no_active_entry(ledger: Ledger) -> None:
    stored = ledger.create(run("r-00000001"))
    stored.state = RunState.FAILED
    ledger.replace(stored)
    with pytest.raises(AlreadyExistsError):
        ledger.create(run("r-00000001"))  # the blob event came again
    assert [e.run_id for e in ledger.active()] == []


# -- ETags --------------------------------------------------------------------------------------------------


def test_a_write_from_a_stale_copy_is_a_conflict(ledger: Ledger) -> None:
    ledger.create(run("r-00000001"))
    first, second = ledger.get("r-00000001"), ledger.get("r-00000001")
    assert first is not None and second is not None
    first.state = RunState.SUBMITTED
    written = ledger.replace(first)
    assert written.etag and written.etag != second.etag
    second.state = RunState.REJECTED
    with pytest.raises(ConcurrencyError):
        ledger.replace(second)
    with pytest.raises(ConcurrencyError):
        ledger.replace(replace(first, etag=None))  # never read: no blind writes
    current = ledger.get("r-00000001")
    assert current is not None and current.state == RunState.SUBMITTED and current.etag == written.etag


def test_a_write_to_a_run_that_vanished_is_a_conflict(backend: Backend) -> None:
    stored = backend.ledger.create(run("r-00000001"))
    backend.lose("r-00000001")
    with pytest.raises(ConcurrencyError):
        backend.ledger.replace(stored)


class VanishingAfterConflict:
    """The backend's ledger, with the run's row deleted by someone else between a create's conflict and the
    read that follows it (the chaos benchmark's deleted rows, issue 22 finding D)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.conflicts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend.ledger, name)

    def create(self, record: RunRecord) -> RunRecord:
        try:
            return self.backend.ledger.create(record)
        except AlreadyExistsError:
            self.conflicts += 1
            self.backend.lose(record.run_id)
            raise


def test_a_run_deleted_between_a_create_conflict_and_its_read_is_created_again(backend: Backend) -> None:
    store = RunStore(backend.ledger, InMemoryStatusStore(), FakeClock(T0))
    store.create("r-0000000d", config_blob="r.yaml", config_name="r", content=b"x", config_etag=None, platform="p")
    ledger = VanishingAfterConflict(backend)
    again = RunStore(ledger, InMemoryStatusStore(), FakeClock(T0))
    record, created = again.create(
        "r-0000000d", config_blob="r.yaml", config_name="r", content=b"x", config_etag=None, platform="p"
    )
    assert ledger.conflicts == 1
    assert created and record.state == RunState.RECEIVED
    assert backend.ledger.get("r-0000000d") is not None


def test_the_store_moves_forward_only_and_rereads_on_a_conflict(ledger: Ledger) -> None:
    store = RunStore(ledger, InMemoryStatusStore(), FakeClock(T0))
    store.create("r-00000001", config_blob="r.yaml", config_name="r", content=b"x", config_etag=None, platform="p")
    stale = store.get("r-00000001")
    assert stale is not None
    assert store.advance("r-00000001", RunState.SUBMITTED, lambda r: setattr(r, "job_name", "job-1")) is not None
    assert store.advance("r-00000001", RunState.RECEIVED) is None  # backward: ignored
    assert store.advance("r-00000001", RunState.SUBMITTED) is None  # a duplicate: ignored
    # A writer holding the copy from before: its ETag write fails, it re-reads and re-decides on what is there.
    noted = store.update(stale, lambda r: r.notes.append("seen"))
    assert noted is not None and noted.state == RunState.SUBMITTED and noted.job_name == "job-1"
    moved = store.advance(stale, RunState.CANCELED)  # legal from what it read, and from what is there
    assert moved is not None and moved.notes == ["seen"]
    assert list(moved.timeline) == ["received", "submitted", "canceled"]


# -- reading what the services read -------------------------------------------------------------------------


def test_list_by_state_in_creation_order(ledger: Ledger) -> None:
    for run_id, minute in (("b-00000002", 0), ("a-00000001", 0), ("c-00000003", 1)):
        ledger.create(run(run_id, minute))
    moved = ledger.get("c-00000003")
    assert moved is not None
    moved.state = RunState.SUBMITTED
    ledger.replace(moved)
    assert [r.run_id for r in ledger.list()] == ["a-00000001", "b-00000002", "c-00000003"]
    assert [r.run_id for r in ledger.list([RunState.SUBMITTED])] == ["c-00000003"]
    assert [r.run_id for r in ledger.list([RunState.SUBMITTED, RunState.RECEIVED])] == [
        "a-00000001",
        "b-00000002",
        "c-00000003",
    ]
    assert ledger.list([]) == [] and ledger.list([RunState.DEPLOYED]) == []


def test_the_runs_of_a_config_are_those_whose_id_starts_with_its_name(ledger: Ledger) -> None:
    for i, run_id in enumerate(("phi3-00000001", "phi3-chat-00000003", "phi3-00000002", "phi4-00000004")):
        ledger.create(run(run_id, i))
    assert [r.run_id for r in ledger.with_prefix("phi3-")] == ["phi3-00000001", "phi3-chat-00000003", "phi3-00000002"]
    assert [r.run_id for r in ledger.with_prefix("phi4")] == ["phi4-00000004"]
    assert ledger.with_prefix("phi5") == [] and len(ledger.with_prefix("")) == 4


def test_recent_is_newest_first_and_pages(ledger: Ledger) -> None:
    for run_id, minute in (("a-00000001", 0), ("c-00000003", 2), ("b-00000002", 2), ("d-00000004", 1)):
        ledger.create(run(run_id, minute, RunState.CANCELED))
    assert ledger.recent(3) == ["b-00000002", "c-00000003", "d-00000004"]  # ties: by run id
    assert ledger.recent(2, skip=2) == ["d-00000004", "a-00000001"] and ledger.recent(5, skip=4) == []


# -- the active index ---------------------------------------------------------------------------------------


def test_the_active_index_follows_each_write(ledger: Ledger) -> None:
    for i in range(3):
        ledger.create(run(f"r-{i:08d}", i))
    ledger.create(run("done-00000009", 9, RunState.CANCELED))  # created finished (an import): never active
    entries = {e.run_id: e for e in ledger.active()}
    assert sorted(entries) == ["r-00000000", "r-00000001", "r-00000002"]
    assert entries["r-00000001"].indexed_at == T0 + timedelta(minutes=1) and entries["r-00000001"].handled_at is None
    r = ledger.get("r-00000001")
    assert r is not None
    r.state = RunState.SUBMITTED
    r = ledger.replace(r)  # still active: still indexed
    assert "r-00000001" in {e.run_id for e in ledger.active()}
    r.state = RunState.FAILED
    ledger.replace(r)  # terminal: leaves the index
    assert sorted(e.run_id for e in ledger.active()) == ["r-00000000", "r-00000002"]
    assert ledger.get("r-00000001") is not None  # finished runs stay readable by id
    ledger.drop_active("r-00000000")
    ledger.drop_active("r-00000000")  # a missing entry is no error
    assert [e.run_id for e in ledger.active()] == ["r-00000002"]


def test_a_claim_is_an_etag_write_so_two_sweeps_never_both_win(ledger: Ledger) -> None:
    ledger.create(run("r-00000001"))
    (entry,) = ledger.active()
    now, later = T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=5)
    assert ledger.claim(entry, now, later)
    assert not ledger.claim(entry, now, later)  # the same stale copy: the ETag moved on
    (held,) = ledger.active()
    assert held.handled_at == now and held.lease_until == later and held.turn == now
    assert not ledger.claim(held, now, later)  # a fresh copy, but the lease is still held
    ledger.release("r-00000001")
    (free,) = ledger.active()
    assert free.lease_until is None and free.handled_at == now
    assert ledger.claim(free, later, later + timedelta(minutes=5))
    (again,) = ledger.active()
    assert ledger.claim(again, later + timedelta(minutes=6), later + timedelta(minutes=9))  # the lease ran out
    ledger.release("r-gone")  # releasing a run that left the index is no error


# -- what a run holds ---------------------------------------------------------------------------------------


def test_the_outbox_index_is_marked_before_a_write_and_dropped_only_if_unchanged(ledger: Ledger) -> None:
    assert ledger.owing() == []
    ledger.mark_owing("r-00000001", T0)
    (listed,) = ledger.owing()
    assert listed.run_id == "r-00000001" and listed.marked_at == T0
    ledger.mark_owing("r-00000001", T0)  # marked again (another state change owes something): a new version
    assert not ledger.drop_owing(listed)  # so a worker that listed it before keeps it
    (again,) = ledger.owing()
    assert ledger.drop_owing(again) and ledger.owing() == []
    assert ledger.drop_owing(again)  # already gone: nothing to do


def test_every_field_and_typed_part_round_trips(ledger: Ledger) -> None:
    full = full_run("line-00000002")
    stored = ledger.create(full)
    assert replace(stored, etag=None) == full
    assert list(stored.timeline) == ["received", "submitted", "deploying", "canary", "deploy_failed"]
    stored.rollout = Rollout()
    stored.smoke_test = stored.approval = stored.notify = stored.config = None
    stored.health = Health()
    stored.errors = []
    ledger.replace(stored)
    again = ledger.get("line-00000002")
    assert again is not None and replace(again, etag=None) == replace(stored, etag=None)
    assert again.rollout == Rollout() and again.canary is None and again.notify_section() == NotifySection()


def test_a_bare_run_reads_back_with_its_defaults(ledger: Ledger) -> None:
    bare = run("r-00000001")
    assert replace(ledger.create(bare), etag=None) == bare


def test_a_field_too_big_for_a_table_property_is_refused_before_anything_is_written(ledger: Ledger) -> None:
    big = run("r-00000001")
    big.notes = ["x" * MAX_PROPERTY_CHARS]
    with pytest.raises(ValueError, match="ledger field notes"):
        ledger.create(big)
    assert ledger.get("r-00000001") is None and ledger.active() == []
    stored = ledger.create(run("r-00000001"))
    stored.metrics = {f"m{i}": float(i) for i in range(3000)}
    with pytest.raises(ValueError, match="ledger field metrics"):
        ledger.replace(stored)
    current = ledger.get("r-00000001")
    assert current is not None and current.metrics == {} and current.etag == stored.etag


def test_a_run_stored_in_a_newer_schema_is_refused_not_guessed(backend: Backend) -> None:
    backend.ledger.create(run("r-00000001"))
    backend.set_stored("r-00000001", "schema_version", 99)
    with pytest.raises(RecordSchemaError, match="schema 99"):
        backend.ledger.get("r-00000001")
