"""A training run records OpenAI's ``trained_tokens`` and ``estimated_finish`` from the job's progress, and
the status blob shows them (the estimate only while the job runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local.platform.jobs import training_progress
from shared.platform.port import JobStatus, TrainingProgress
from shared.states import RunState
from tests.functional.shared.world import World

AT = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)


@pytest.fixture
def world() -> World:
    return World()


def training(step: int, tokens: int, seconds: float) -> TrainingProgress:
    return TrainingProgress(step=step, total_steps=60, trained_tokens=tokens, train_seconds=seconds, at=AT)


def test_a_look_at_a_training_job_records_its_tokens_and_estimated_finish(world: World) -> None:
    record = world.drop()
    assert record is not None
    run = record.run_id
    job = world.platform.jobs[run]
    job.status, job.training = JobStatus.RUNNING, training(12, 24480, 96.0)
    world.reconcile()
    running = world.store.get(run)
    assert running is not None and running.state == RunState.RUNNING
    assert (running.trained_tokens, running.estimated_finish) == (24480, AT + timedelta(seconds=48 * 8))
    blob = world.status.blobs["phi3.yaml.json"]
    assert blob["trained_tokens"] == 24480 and blob["estimated_finish"] == (AT + timedelta(seconds=384)).isoformat()

    # Nothing moved: a second look writes nothing.
    etag = running.etag
    world.reconcile()
    assert world.store.get(run).etag == etag  # type: ignore[union-attr]
    # An event carries no progress: what was recorded stays.
    world.run_event("run_status_changed_camel", run, runStatus="Running")
    assert world.store.get(run).trained_tokens == 24480  # type: ignore[union-attr]

    job.training = training(60, 122400, 480.0)
    world.platform.finish_job(run)
    world.reconcile()
    done = world.store.get(run)
    assert done is not None and done.state != RunState.RUNNING
    assert done.trained_tokens == 122400 and done.estimated_finish is None
    assert world.status.blobs["phi3.yaml.json"]["estimated_finish"] is None


def test_without_step_reports_the_tokens_come_from_the_jobs_summary(world: World) -> None:
    record = world.drop()
    assert record is not None
    world.platform.finish_job(record.run_id)
    world.platform.jobs[record.run_id].metrics["train_tokens"] = 5000.0
    world.reconcile()
    assert world.store.get(record.run_id).trained_tokens == 5000  # type: ignore[union-attr]


def test_the_local_jobs_last_step_update_is_the_ports_progress() -> None:
    detail = {
        "step": 12,
        "total_steps": 60,
        "loss": 1.83,
        "tokens_per_second": 1020.0,
        "trained_tokens": 24480.0,
        "train_seconds": 96.0,
    }
    assert training_progress(detail, AT) == TrainingProgress(
        step=12, total_steps=60, loss=1.83, tokens_per_second=1020.0, trained_tokens=24480, train_seconds=96.0, at=AT
    )
    assert training_progress({"phase": "evaluate_after", "split": "test"}, AT) is None
    assert training_progress(None, AT) is None
