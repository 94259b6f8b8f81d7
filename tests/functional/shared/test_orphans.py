"""Finding 7: what the app made never runs unseen. The Azurite-SIGKILL case in miniature: a run's ledger row is
lost while its job runs; reconcile records the orphan job, cancels it past the grace, and `autopilot status`
lists it. Orphan endpoints go when idle by the cleanup's evidence; model versions are only recorded; nothing
is done on a ledger read that failed or a listing that failed."""

from __future__ import annotations

from datetime import timedelta

from autopilot.runs import orphan_lines
from shared.exceptions import TransientPlatformError
from shared.platform.port import JobStatus
from shared.services.orphans import ORPHANS_BLOB, read_orphans
from shared.services.reconcile import reconcile
from shared.states import RunState
from tests.functional.shared.world import TIMEOUT, World

GRACE = timedelta(minutes=60)


def _reconcile(world: World):  # type: ignore[no-untyped-def]
    return reconcile(world.store, world.platform, deploy_timeout=TIMEOUT, orphan_grace=GRACE)


def _orphans(world: World) -> dict[tuple[str, str], str]:
    return {(o.kind, o.name): o.action for o in read_orphans(world.status)}


def test_a_job_whose_ledger_row_was_lost_is_seen_then_canceled_after_the_grace() -> None:
    world = World()
    record = world.drop()
    assert record is not None and record.state == RunState.SUBMITTED and record.job_name
    job = record.job_name
    world.platform.jobs[job].status = JobStatus.RUNNING
    world.ledger.lose(record.run_id)

    report = _reconcile(world)
    assert [(o.kind, o.name, o.run_id) for o in report.orphans] == [("job", job, record.run_id)]
    assert _orphans(world)[("job", job)].startswith("kept: canceled if still orphaned in 60 min")
    assert world.platform.jobs[job].status == JobStatus.RUNNING  # within the grace: left running

    world.clock.advance(minutes=59)
    assert _reconcile(world).orphans == []  # known and left alone: nothing new to report
    assert world.platform.jobs[job].status == JobStatus.RUNNING

    world.clock.advance(minutes=2)
    _reconcile(world)
    assert world.platform.jobs[job].status == JobStatus.CANCELED
    assert _orphans(world)[("job", job)].startswith("canceled: orphaned for 61 min")

    _reconcile(world)  # later sweeps keep it on record, with nothing more to do
    assert _orphans(world)[("job", job)] == "kept: the job ended Canceled; nothing runs"
    lines = "\n".join(orphan_lines(world.store))
    assert "orphans: 1" in lines and job in lines and record.run_id in lines and "1h01m" in lines


def test_an_orphan_endpoint_goes_when_idle_and_its_model_is_only_recorded() -> None:
    world = World()
    record = world.drop()
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    record = world.store.get(record.run_id)
    assert record is not None and record.state == RunState.DEPLOYED and record.endpoint_name
    endpoint, model = record.endpoint_name, f"{record.model_name}:{record.model_version}"
    world.ledger.lose(record.run_id)

    _reconcile(world)
    found = _orphans(world)
    assert found[("endpoint", endpoint)].startswith("kept: last request")  # the smoke test, just now
    assert found[("model", model)] == "kept: model versions are never deleted by the app"
    assert found[("job", record.job_name)] == "kept: the job ended Completed; nothing runs"

    world.clock.advance(minutes=31)  # the config's idle_after_minutes is 30; no request came
    _reconcile(world)
    assert endpoint in world.platform.deleted_endpoints
    assert _orphans(world)[("endpoint", endpoint)].startswith("deleted: idle")

    _reconcile(world)  # gone from the platform: gone from the record
    assert ("endpoint", endpoint) not in _orphans(world)
    assert ("model", model) in _orphans(world)


def test_an_endpoint_without_metric_data_is_kept() -> None:
    world = World()
    record = world.drop()
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    record = world.store.get(record.run_id)
    assert record is not None and record.endpoint_name
    world.platform.endpoints[record.endpoint_name].metrics_missing = True
    world.ledger.lose(record.run_id)
    world.clock.advance(hours=5)
    _reconcile(world)
    assert record.endpoint_name not in world.platform.deleted_endpoints
    assert "idleness unknown" in _orphans(world)[("endpoint", record.endpoint_name)]


def test_nothing_is_recorded_or_done_on_missing_data() -> None:
    world = World()
    record = world.drop()
    assert record is not None and record.job_name
    job = record.job_name
    world.platform.jobs[job].status = JobStatus.RUNNING

    _reconcile(world)  # the run is in the ledger: not an orphan
    assert _orphans(world) == {}

    world.ledger.unreadable.add(record.run_id)  # a read that fails is not a missing row
    world.clock.advance(hours=3)
    _reconcile(world)
    assert _orphans(world) == {}
    assert world.platform.jobs[job].status == JobStatus.RUNNING

    world.ledger.unreadable.clear()
    world.ledger.lose(record.run_id)
    _reconcile(world)
    assert ("job", job) in _orphans(world)
    world.platform.fail_next["list_jobs"] = TransientPlatformError("throttled", code="429")
    world.clock.advance(hours=3)
    _reconcile(world)  # no listing: the orphan stays on record, and nothing is canceled on no evidence
    assert ("job", job) in _orphans(world)
    assert world.platform.jobs[job].status == JobStatus.RUNNING
    assert world.status.blobs[ORPHANS_BLOB]["not_listed"] == ["job"]
