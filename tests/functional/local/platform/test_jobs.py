"""Local jobs as real processes: idempotent submit, events, metrics, and a killed job ending Failed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from local.common import processes
from local.common.statefiles import read_json
from local.platform.jobscheduler import KILLED_REASON
from shared.exceptions import NotFoundError, PlatformError
from shared.platform.port import JobStatus
from tests.functional.local.platform.support import WEBHOOK_KEY, Workspace


def test_completed_job_reports_metrics_and_posts_its_events(workspace: Workspace, completed_job: str) -> None:
    info = workspace.platform.get_job(completed_job)
    assert info.status == JobStatus.COMPLETED
    assert info.tags == {"autopilot_run_id": completed_job, "autopilot_managed": "true"}
    assert {"eval_loss_before", "eval_loss_after", "perplexity_before", "perplexity_after"} <= set(info.metrics)
    assert info.progress and info.progress.startswith("completed")
    # The short loss curve the recipe wrote beside the model, read back with the job.
    assert info.history and all("step" in p for p in info.history)
    assert all(isinstance(p["loss"], float) and 0 <= p["mean_token_accuracy"] <= 1 for p in info.history)

    changed = workspace.webhook.wait_for("RunStatusChanged", count=2)
    completed = workspace.webhook.wait_for("RunCompleted")
    assert [e["data"]["runStatus"] for e in changed] == ["Running", "Completed"]
    assert len(completed) == 1
    for event in changed + completed:
        assert event["function"] == "register"
        assert event["data"]["runId"] == completed_job
        assert event["data"]["runTags"] == info.tags
        assert event["data"]["runType"] == "azureml.PipelineRun"
    assert set(workspace.webhook.keys) == {WEBHOOK_KEY}
    # The job process forgets itself once its events are out.
    deadline = time.monotonic() + 10
    while (workspace.workdir / "pids" / f"job-{completed_job}.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (workspace.workdir / "pids" / f"job-{completed_job}.pid").exists()
    log = workspace.platform.jobs.log_path(completed_job).read_text()
    assert WEBHOOK_KEY not in log


def test_submit_is_idempotent_by_name_and_run(workspace: Workspace, completed_job: str) -> None:
    spec_before = read_json(workspace.workdir / "platform" / "jobs" / completed_job / "spec.json")
    again = workspace.platform.submit_job(workspace.job_request(completed_job))
    assert again.status == JobStatus.COMPLETED  # the job that ran, not a new one
    assert read_json(workspace.workdir / "platform" / "jobs" / completed_job / "spec.json") == spec_before
    assert f"job-{completed_job}.pid" not in workspace.running_pids()

    foreign = workspace.job_request(completed_job)
    foreign.tags["autopilot_run_id"] = "someone-else-1234abcd"
    with pytest.raises(PlatformError, match="another run"):
        workspace.platform.submit_job(foreign)


def test_unknown_job_is_not_found(workspace: Workspace) -> None:
    with pytest.raises(NotFoundError):
        workspace.platform.get_job("no-such-job-00000000")
    with pytest.raises(NotFoundError):
        workspace.platform.get_job("../escape")


def test_killed_job_ends_failed_with_a_reason(workspace: Workspace) -> None:
    name = "killed-job-0000bbbb"
    first = workspace.platform.submit_job(workspace.job_request(name, max_steps=10_000))
    assert first.status == JobStatus.QUEUED
    status_path = workspace.workdir / "platform" / "jobs" / name / "status.json"
    deadline = time.monotonic() + 90
    # Kill it mid-training: once its MLflow run exists.
    while not (read_json(status_path) or {}).get("mlflow_run_id"):
        assert time.monotonic() < deadline, "the job never started training"
        time.sleep(0.2)
    record = processes.read_pid_file(workspace.workdir / "pids" / f"job-{name}.pid")
    assert record is not None and record.pgid
    os.killpg(record.pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while processes.is_alive(record):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    info = workspace.platform.get_job(name)
    assert info.status == JobStatus.FAILED
    assert info.error == KILLED_REASON
    status = read_json(workspace.workdir / "platform" / "jobs" / name / "status.json")
    assert status is not None and status["status"] == "Failed" and status["error"] == KILLED_REASON
    assert f"job-{name}.pid" not in workspace.running_pids()
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=workspace.platform.workspace.tracking_uri).get_run(status["mlflow_run_id"])
    assert run.info.status == "FAILED"  # not RUNNING forever


def test_sigterm_cancels_the_job(workspace: Workspace) -> None:
    name = "stopped-job-0000cccc"
    workspace.platform.submit_job(workspace.job_request(name, max_steps=10_000))
    deadline = time.monotonic() + 60
    while workspace.platform.get_job(name).status != JobStatus.RUNNING:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    assert processes.stop_pid_file(workspace.workdir / "pids" / f"job-{name}.pid", timeout_s=15)
    info = workspace.platform.get_job(name)
    assert info.status == JobStatus.CANCELED
    assert info.error and "SIGTERM" in info.error


def test_sigterm_while_the_tracking_store_is_locked_still_ends_canceled(workspace: Workspace) -> None:
    """The flaky case made certain: the job's MLflow writes wait on a lock another process holds, so its way
    out (mark the run failed) would block past the stopper's grace and the job would be killed as Failed."""
    import sqlite3

    name = "locked-stop-0000dddd"
    workspace.platform.submit_job(workspace.job_request(name, max_steps=10_000))
    status_path = workspace.workdir / "platform" / "jobs" / name / "status.json"
    deadline = time.monotonic() + 90
    while not (read_json(status_path) or {}).get("mlflow_run_id"):
        assert time.monotonic() < deadline, "the job never started training"
        time.sleep(0.2)
    holder = sqlite3.connect(workspace.platform.workspace.mlflow_db, timeout=30, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # every write of the job now waits (busy timeout 30 s)
        started = time.monotonic()
        assert processes.stop_pid_file(workspace.workdir / "pids" / f"job-{name}.pid", timeout_s=15)
        stopped_in = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    info = workspace.platform.get_job(name)
    assert info.status == JobStatus.CANCELED, info.error
    assert info.error and "SIGTERM" in info.error
    assert stopped_in < 15  # it exited on its own: the stopper never had to SIGKILL it
