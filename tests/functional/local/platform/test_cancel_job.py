"""Canceling a local job: the training process stops, the job reads Canceled, its MLflow run is ended, and
canceling again (or a finished job) changes nothing."""

from __future__ import annotations

import time

from local.common import processes
from local.platform.workspace import read_json
from shared.platform.port import JobStatus
from tests.functional.local.platform.support import Workspace


def test_cancel_stops_a_training_job(workspace: Workspace) -> None:
    name = "canceled-job-0000dddd"
    workspace.platform.submit_job(workspace.job_request(name, max_steps=10_000))
    status_path = workspace.workdir / "platform" / "jobs" / name / "status.json"
    deadline = time.monotonic() + 90
    while not (read_json(status_path) or {}).get("mlflow_run_id"):
        assert time.monotonic() < deadline, "the job never started training"
        time.sleep(0.2)
    pid = processes.read_pid_file(workspace.workdir / "pids" / f"job-{name}.pid")
    assert pid is not None

    workspace.platform.cancel_job(name)
    assert not processes.is_alive(pid)
    info = workspace.platform.get_job(name)
    assert info.status == JobStatus.CANCELED
    workspace.platform.cancel_job(name)  # again: nothing to do
    assert workspace.platform.get_job(name).status == JobStatus.CANCELED
    from mlflow import MlflowClient

    status = read_json(status_path) or {}
    run = MlflowClient(tracking_uri=workspace.platform.workspace.tracking_uri).get_run(status["mlflow_run_id"])
    assert run.info.status in {"KILLED", "FAILED"} and run.info.status != "RUNNING"


def test_cancel_leaves_a_finished_job_alone(workspace: Workspace, completed_job: str) -> None:
    workspace.platform.cancel_job(completed_job)
    assert workspace.platform.get_job(completed_job).status == JobStatus.COMPLETED
