"""Killing a local job mid-training ends in a completed run that resumed from its checkpoint.

End to end with real job processes on the tiny model: a job is SIGKILLed (its whole process group, as the
OOM killer or a lost node would: nothing reports) once its first checkpoint is on disk; the platform
restarts it with ``resume`` (``AUTOPILOT_LOCAL_JOB_RESTARTS``), the job ends Completed, its status says
where it continued from, and its adapter equals that of the same job run without interruption. Nothing
waits on a clock: the test polls files, with generous deadlines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from local.common import processes
from local.common.statefiles import read_json
from local.platform.training.checkpoints import latest_checkpoint, list_checkpoints, read_state
from shared.platform.port import JobStatus
from tests.functional.local.platform.support import JOB_TIMEOUT_S, Workspace, kill_job_process, make_workspace

# Dropout, so the restored random state matters; a checkpoint every 2 steps, and enough steps after the
# first one that the job is still training when the test has seen it (the kill lands before the end).
RUN = {"max_steps": 40, "save_steps": 2, "save_total_limit": 2, "lora_dropout": 0.1, "logging_steps": 1}


@pytest.fixture(scope="module")
def resume_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    ws = make_workspace(
        tmp_path_factory.mktemp("job-resume"), AUTOPILOT_LOCAL_MAX_JOBS="2", AUTOPILOT_LOCAL_JOB_RESTARTS="1"
    )
    yield ws
    ws.stop_all()
    ws.webhook.server.shutdown()


def job_dir(ws: Workspace, name: str) -> Path:
    return ws.workdir / "platform" / "jobs" / name


def status_of(ws: Workspace, name: str) -> dict[str, Any]:
    return read_json(job_dir(ws, name) / "status.json") or {}


def wait_for_checkpoint(ws: Workspace, name: str, timeout_s: float = JOB_TIMEOUT_S) -> Path:
    """The job's first complete checkpoint, polled for (its ``state.json`` is written last)."""
    deadline = time.monotonic() + timeout_s
    while (found := latest_checkpoint(job_dir(ws, name) / "output")) is None:
        status = status_of(ws, name)
        assert not JobStatus.parse(status.get("status")).is_terminal, f"job {name} ended before a checkpoint: {status}"
        assert time.monotonic() < deadline, f"job {name} wrote no checkpoint: {status}"
        time.sleep(0.05)
    return found


def adapter(ws: Workspace, name: str) -> dict[str, torch.Tensor]:
    return load_file(job_dir(ws, name) / "output" / "lora_adapter" / "adapter_model.safetensors")


def test_a_job_killed_mid_training_is_restarted_and_completes_from_its_checkpoint(
    resume_workspace: Workspace,
) -> None:
    ws = resume_workspace
    killed, whole = "killed-resumed-0000aaaa", "uninterrupted-0000bbbb"
    ws.platform.submit_job(ws.job_request(killed, **RUN))
    ws.platform.submit_job(ws.job_request(whole, **RUN))

    checkpoint = wait_for_checkpoint(ws, killed)
    kill_job_process(ws, killed)
    # The process is gone: what is on disk now is what attempt 2 can continue from.
    saved_steps = [read_state(p)["step"] for p in list_checkpoints(checkpoint.parent.parent)]
    assert saved_steps and max(saved_steps) < RUN["max_steps"], saved_steps  # killed before the end
    assert status_of(ws, killed)["status"] == "Running"  # nothing reported the death

    # The platform's next look finds the process gone and starts attempt 2 with resume.
    assert ws.platform.get_job(killed).status == JobStatus.RUNNING
    end = ws.wait_job(killed)
    log_tail = processes.log_tail(ws.platform.jobs.log_path(killed), 30)
    assert end.status == JobStatus.COMPLETED, (end, log_tail)
    assert ws.wait_job(whole).status == JobStatus.COMPLETED

    status = status_of(ws, killed)
    resumed_from = status["resumed_from_step"]
    assert resumed_from == max(saved_steps), (resumed_from, saved_steps)  # the latest checkpoint
    assert status["restarts"] == 1 and status["attempt"] == 2
    assert [(e["restart"], e["resumed_from_step"]) for e in status["restart_log"]] == [(1, resumed_from)]
    assert end.progress and f"restarted 1x, resumed from step {resumed_from}" in end.progress
    assert f"resumed from the checkpoint of step {resumed_from}" in status["notes"]
    assert "restarts" not in status_of(ws, whole)

    # The whole curve, the earlier attempt's steps included, and the uninterrupted run's weights.
    assert [int(p["step"]) for p in end.history] == [int(p["step"]) for p in ws.platform.get_job(whole).history]
    expected, got = adapter(ws, whole), adapter(ws, killed)
    assert set(expected) == set(got) and expected
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert status["metrics"]["eval_loss_after"] == status_of(ws, whole)["metrics"]["eval_loss_after"]
