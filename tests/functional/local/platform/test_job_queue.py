"""The local job queue and restarts, with real job processes on the tiny model.

One slot and one restart in this module's workspace. The tests read ``status.json`` directly while they
wait, never through ``get_job``, where that is what they check: a job that ends must start the next one by
itself, with nobody asking.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local.common.statefiles import read_json
from local.platform.adapter import LocalPlatform
from local.platform.jobscheduler import KILLED_REASON
from shared.platform.port import JobStatus
from tests.functional.local.platform.support import JOB_TIMEOUT_S, Workspace, kill_job_process, make_workspace


@pytest.fixture(scope="module")
def queue_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    ws = make_workspace(
        tmp_path_factory.mktemp("job-queue"), AUTOPILOT_LOCAL_MAX_JOBS="1", AUTOPILOT_LOCAL_JOB_RESTARTS="1"
    )
    yield ws
    ws.stop_all()
    ws.webhook.server.shutdown()


def status_of(ws: Workspace, name: str) -> dict[str, Any]:
    return read_json(ws.workdir / "platform" / "jobs" / name / "status.json") or {}


def spec_of(ws: Workspace, name: str) -> dict[str, Any]:
    return read_json(ws.workdir / "platform" / "jobs" / name / "spec.json") or {}


def wait_status(ws: Workspace, name: str, done: Any, what: str, timeout_s: float = JOB_TIMEOUT_S) -> dict[str, Any]:
    """Poll the job's status file (not get_job, which schedules) until ``done(status)``."""
    deadline = time.monotonic() + timeout_s
    while not done(status := status_of(ws, name)):
        assert time.monotonic() < deadline, f"job {name} never {what}: {status}"
        time.sleep(0.2)
    return status


def terminal(status: dict[str, Any]) -> bool:
    return JobStatus.parse(status.get("status")).is_terminal


def test_jobs_past_the_limit_wait_and_start_in_submission_order(queue_workspace: Workspace) -> None:
    ws = queue_workspace
    names = ["queued-a-0000aaaa", "queued-b-0000bbbb", "queued-c-0000cccc"]
    for name in names:
        assert ws.platform.submit_job(ws.job_request(name)).status == JobStatus.QUEUED
    # One slot: the first started at once, the others wait, in order, and say so.
    assert status_of(ws, names[0]).get("attempt") == 1
    for position, name in enumerate(names[1:]):
        assert "attempt" not in status_of(ws, name)
        info = ws.platform.get_job(name)
        assert info.status == JobStatus.QUEUED
        assert info.progress == f"queued: position {position + 1}, at most 1 job(s) run at once"

    # Nobody calls get_job from here on: each job, as it ends, starts the next.
    finished = [wait_status(ws, name, terminal, "ended") for name in names]
    assert [s["status"] for s in finished] == ["Completed"] * 3
    for earlier, later in itertools.pairwise(finished):
        assert earlier["finished_at"] <= later["launched_at"]  # never two at once
        assert later["attempt"] == 1
    for name in names:
        assert not list((ws.workdir / "platform" / "queue").glob(f"*-{name}"))


def test_a_killed_job_restarts_with_resume_and_reports_its_end_once(queue_workspace: Workspace) -> None:
    ws = queue_workspace
    killed, waiting = "restarted-0000dddd", "after-restart-0000eeee"
    ws.platform.submit_job(ws.job_request(killed, max_steps=30))
    ws.platform.submit_job(ws.job_request(waiting))
    wait_status(ws, killed, lambda s: s.get("status") == "Running", "started")
    kill_job_process(ws, killed)
    assert "attempt" not in status_of(ws, waiting)  # a killed job hands on nothing

    # A fresh platform, as after a host restart, looks at the waiting job: the lost one restarts first and
    # keeps the only slot.
    restarted_platform = LocalPlatform(ws.platform.settings)
    assert restarted_platform.get_job(waiting).status == JobStatus.QUEUED
    status = status_of(ws, killed)
    assert status["restarts"] == 1 and status["attempt"] == 2
    assert [entry["restart"] for entry in status["restart_log"]] == [1]
    assert spec_of(ws, killed)["training"]["resume"] is True
    assert "restart" in (restarted_platform.get_job(killed).progress or "")

    end = wait_status(ws, waiting, terminal, "ended")  # started by the restarted job as it ended
    assert end["status"] == "Completed"
    assert status_of(ws, killed)["status"] == "Completed"
    assert ws.platform.get_job(killed).status == JobStatus.COMPLETED
    # The app heard Running once and the end once, though two processes ran the job.
    changed = [e["data"]["runStatus"] for e in ws.webhook.of_type("RunStatusChanged") if e["data"]["runId"] == killed]
    # Posted before the job started the next one, so already here.
    completed = [e for e in ws.webhook.of_type("RunCompleted") if e["data"]["runId"] == killed]
    assert changed == ["Running", "Completed"]
    assert len(completed) == 1


def test_restarts_are_bounded_then_the_job_fails(queue_workspace: Workspace) -> None:
    ws = queue_workspace
    name = "killed-twice-0000ffff"
    ws.platform.submit_job(ws.job_request(name, max_steps=30))
    first_pid = wait_status(ws, name, lambda s: s.get("status") == "Running", "started")["pid"]
    kill_job_process(ws, name)
    assert ws.platform.get_job(name).status == JobStatus.RUNNING  # restarted (1 of 1)
    wait_status(ws, name, lambda s: s.get("attempt") == 2 and s.get("pid") not in (None, first_pid), "restarted")
    kill_job_process(ws, name)

    info = ws.platform.get_job(name)
    assert info.status == JobStatus.FAILED
    assert info.error == f"{KILLED_REASON}; gave up after 1 restarts"
    assert status_of(ws, name)["restarts"] == 1
    assert f"job-{name}.pid" not in ws.running_pids()
