"""A cancel that lands while the submit is in flight (the run still ``received``, no job name recorded) stops
the job however the race falls: before the job exists, between its creation and the submit's ledger write, or
with the submit dying in between (issue 22, finding 1)."""

from __future__ import annotations

import pytest

from shared.platform.port import JobInfo, JobRequest, JobStatus
from shared.services.cancel import cancel_run
from shared.services.orphans import ORPHANS_BLOB
from shared.states import RunState
from tests.configs import config_bytes
from tests.fakes import WorkerDied, die_entering
from tests.functional.shared.world import World


def cancel_as_the_submit_runs(world: World, *, before_the_job: bool) -> list[str]:
    """``autopilot cancel`` arriving while ``submit_job`` is in flight: before or after the job is created."""
    real = world.platform.submit_job
    canceled: list[str] = []

    def submit_job(request: JobRequest) -> JobInfo:
        if before_the_job:
            canceled.append(cancel_run(world.store, world.platform, request.name, by="ana").run_id)
        job = real(request)
        if not before_the_job:
            canceled.append(cancel_run(world.store, world.platform, request.name, by="ana").run_id)
        return job

    world.platform.submit_job = submit_job  # type: ignore[method-assign]
    return canceled


@pytest.mark.parametrize("before_the_job", [True, False], ids=["cancel-before-the-job", "cancel-after-the-job"])
def test_a_cancel_during_submit_stops_the_job(before_the_job: bool) -> None:
    world = World()
    canceled = cancel_as_the_submit_runs(world, before_the_job=before_the_job)
    world.drop()
    [run] = canceled
    record = world.store.get(run)
    assert record is not None and record.state == RunState.CANCELED
    assert world.platform.jobs[run].status == JobStatus.CANCELED
    assert record.job_name == run  # the job is named on the run, so status shows what was stopped
    world.reconcile()
    assert world.state(run) == RunState.CANCELED and world.platform.jobs[run].status == JobStatus.CANCELED


def test_a_submit_that_dies_after_creating_the_job_of_a_canceled_run_is_cleaned_up_by_redelivery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World()
    canceled = cancel_as_the_submit_runs(world, before_the_job=True)
    killed = die_entering(monkeypatch, RunState.SUBMITTED, times=1)
    with pytest.raises(WorkerDied):
        world.drop()
    [run] = canceled
    assert len(killed) == 1 and world.platform.jobs[run].status == JobStatus.QUEUED  # the job runs on
    monkeypatch.undo()
    del world.platform.submit_job  # the cancel is not repeated
    world.drop()  # the blob trigger delivers the blob again
    assert world.state(run) == RunState.CANCELED
    assert world.platform.jobs[run].status == JobStatus.CANCELED


def test_the_orphan_sweep_cancels_a_job_whose_run_is_canceled(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    canceled = cancel_as_the_submit_runs(world, before_the_job=True)
    die_entering(monkeypatch, RunState.SUBMITTED, times=1)
    with pytest.raises(WorkerDied):
        world.drop()
    monkeypatch.undo()
    [run] = canceled
    assert world.platform.jobs[run].status == JobStatus.QUEUED  # no re-delivery comes (the blob was poisoned)
    world.reconcile()
    assert world.platform.jobs[run].status == JobStatus.CANCELED  # at once: the canceled run is the evidence
    assert world.state(run) == RunState.CANCELED
    [entry] = world.status.blobs[ORPHANS_BLOB]["orphans"]
    assert (entry["kind"], entry["name"], entry["action"]) == ("job", run, f"canceled: run {run} is canceled")
    world.reconcile()
    assert world.platform.jobs[run].status == JobStatus.CANCELED


def test_a_job_named_like_the_run_but_of_someone_else_is_not_canceled() -> None:
    world = World()
    other = world.drop(name="other.yaml")
    assert other is not None and other.state == RunState.SUBMITTED
    record, _ = world.store.create(
        "phi3-0000abcd",
        config_blob="phi3.yaml",
        config_name="phi3",
        content=config_bytes(),
        config_etag=None,
        platform="fake",
    )
    # A job under this run's name whose tags name another run: not the app's for this run, never touched.
    world.platform.jobs[record.run_id] = world.platform.jobs.pop(other.run_id)
    cancel_run(world.store, world.platform, record.run_id, by="ana")
    assert world.state(record.run_id) == RunState.CANCELED
    assert world.platform.jobs[record.run_id].status == JobStatus.QUEUED
