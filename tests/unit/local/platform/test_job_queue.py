"""The job queue's pieces without processes: slots from the machine, order and claims, the MLflow retry, and
a stopped job ending Canceled whatever its interrupted code raised."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from local.platform import jobrunner
from local.platform.jobqueue import CLAIM_FILE, JobQueue, default_max_jobs, max_jobs
from local.platform.jobrunner import JobRunner
from local.platform.jobspec import ComputeRef, FoundationModelRef, JobSpec, JobTraining
from local.platform.jobstatus import read_status
from local.platform.mlflow_retry import is_locked_error, retry_locked
from local.platform.models import TINY
from local.platform.workspace import Workspace
from shared.platform.port import JobStatus
from shared.settings import Settings

GIB = 1024**3


@pytest.mark.parametrize(
    ("cpus", "memory", "expected"),
    [
        (2, 8 * GIB, 1),  # this kind of VM: one job at a time
        (16, 64 * GIB, 8),  # bounded by cores
        (16, 8 * GIB, 2),  # bounded by memory
        (64, 2 * GIB, 1),  # never below one
        (None, None, 1),  # nothing known
    ],
)
def test_default_slots_follow_cores_and_memory(cpus: int | None, memory: int | None, expected: int) -> None:
    assert default_max_jobs(cpus, memory) == expected


def test_a_configured_limit_wins() -> None:
    assert max_jobs(3) == 3
    assert max_jobs(0) >= 1


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    workspace = Workspace(tmp_path)
    workspace.ensure()
    for name in ("job-a", "job-b", "job-c"):
        workspace.job_dir(name).mkdir(parents=True)
    return JobQueue(workspace)


def test_waiting_jobs_keep_submission_order_and_a_retried_submit_keeps_its_place(queue: JobQueue) -> None:
    for name in ("job-a", "job-b", "job-c", "job-a"):
        queue.enqueue(name)
    assert queue.waiting() == ["job-a", "job-b", "job-c"]
    assert [queue.position(n) for n in ("job-a", "job-b", "job-c", "job-x")] == [1, 2, 3, None]


def test_a_job_is_claimed_once(queue: JobQueue) -> None:
    queue.enqueue("job-a")
    queue.enqueue("job-b")
    assert queue.claim("job-b") is True
    assert queue.claim("job-b") is False  # a second scheduler finds it taken
    assert (queue.workspace.job_dir("job-b") / CLAIM_FILE).is_file()
    assert queue.waiting() == ["job-a"]
    queue.drop("job-a")
    assert queue.waiting() == []


def test_the_queue_outlives_its_reader(queue: JobQueue) -> None:
    queue.enqueue("job-c")
    queue.enqueue("job-a")
    assert JobQueue(Workspace(queue.workspace.workdir)).waiting() == ["job-c", "job-a"]


class Flaky:
    """Fails with the given errors in turn, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def wrapped_locked() -> Exception:
    try:
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.OperationalError as inner:
            raise RuntimeError("(sqlite3.OperationalError) [SQL: INSERT INTO metrics ...]") from inner
    except RuntimeError as outer:
        return outer


def test_a_locked_store_is_retried_with_backoff() -> None:
    waits: list[float] = []
    call = Flaky(sqlite3.OperationalError("database is locked"), wrapped_locked())
    assert retry_locked(call, sleep=waits.append) == "ok"
    assert call.calls == 3 and waits == [0.5, 1.0]


def test_other_errors_are_not_retried_and_a_lock_that_stays_gives_up() -> None:
    waits: list[float] = []
    with pytest.raises(ValueError, match="no such run"):
        retry_locked(Flaky(ValueError("no such run")), sleep=waits.append)
    assert waits == []
    locked = [sqlite3.OperationalError("database is locked") for _ in range(3)]
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        retry_locked(Flaky(*locked), attempts=3, sleep=waits.append)
    assert waits == [0.5, 1.0]
    assert is_locked_error(wrapped_locked()) and not is_locked_error(ValueError("x"))


class InterruptedWrite(JobRunner):
    """SIGTERM lands during an MLflow write, whose clean-up then raises SQLite's lock error instead."""

    def _experiment(self) -> None:
        return None

    def _train(self) -> Any:
        jobrunner.CANCEL_REQUESTED.set()
        raise sqlite3.OperationalError("database is locked")


@pytest.fixture
def cancel_flag() -> Iterator[None]:
    yield
    jobrunner.CANCEL_REQUESTED.clear()


def job_spec(workdir: Path, name: str) -> JobSpec:
    training = JobTraining(
        job_name=name,
        model_name=TINY,
        output_dir=str(workdir / "output"),
        params={},
        train_file=str(workdir / "train.jsonl"),
        mlflow_tracking_uri=f"sqlite:///{workdir}/mlflow.db",
        experiment_name="e",
        run_name=name,
        tags={},
    )
    return JobSpec(
        job_name=name,
        display_name=name,
        experiment_name="e",
        tags={},
        foundation_model=FoundationModelRef(name=TINY, version="1", id="local://models/tiny/versions/1"),
        compute=ComputeRef(cluster="local-cpu"),
        models_cache=str(workdir / "models"),
        artifact_root=str(workdir / "mlartifacts"),
        topic="local",
        submitted_at=datetime.now(UTC),
        workdir=str(workdir),
        training=training,
    )


def test_a_stopped_job_ends_canceled_not_database_is_locked(tmp_path: Path, cancel_flag: None) -> None:
    spec = tmp_path / "spec.json"
    job_spec(tmp_path, "stopped").save(spec)
    runner = InterruptedWrite(spec, dataclasses.replace(Settings.from_env({}), webhook_url=""))
    assert runner.run() == 1
    status = read_status(tmp_path)
    assert status is not None and status.status == JobStatus.CANCELED
    assert status.error is not None and "SIGTERM" in status.error
