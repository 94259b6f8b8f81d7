"""Canceling a local job: the training process stops, the job reads Canceled, its MLflow run is ended, and
canceling again changes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.common import processes
from local.common.statefiles import read_json
from shared.platform.port import JobStatus
from tests.functional.local.platform.support import Workspace, make_workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    # Its own workspace: this job's events must not reach the package's shared webhook recorder.
    ws = make_workspace(tmp_path)
    yield ws
    ws.stop_all()
    ws.webhook.server.shutdown()


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
