"""Which local jobs run: the queue's slots, starting job processes, and recovering jobs whose process died.

At most ``AUTOPILOT_LOCAL_MAX_JOBS`` jobs run at once; the others stay Queued and start in submission order
(``jobqueue.py``). A started job whose process is gone without reporting (killed, out of memory) is started
again with ``training.resume`` set, so the recipe continues from its latest checkpoint, at most
``AUTOPILOT_LOCAL_JOB_RESTARTS`` times; then it is Failed. Each restart is kept in ``status.json``
(``restarts``, ``restart_log``) and shown in the job's progress line. Who schedules: a job process as it ends
(its slot is free), and the platform whenever a job is read that waits or whose process is gone.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from local.common.statefiles import file_lock
from local.platform.jobqueue import JobQueue, max_jobs
from local.platform.jobspec import SPEC_FILE, read_spec, write_spec
from local.platform.jobstatus import JobStatusRecord, RestartEntry, ended, read_status, write_status
from local.platform.mlflow_runs import end_run
from local.platform.supervisor import Supervisor
from local.platform.workspace import Workspace, child_env
from shared.platform.port import JobStatus
from shared.settings import Settings

log = logging.getLogger(__name__)

LOG_FILE = "job.log"
KILLED_REASON = "job process exited unexpectedly (killed?)"
STRAY_STOP_TIMEOUT_S = 2.0


class JobScheduler:
    def __init__(
        self, workspace: Workspace, settings: Settings, webhook_key: Callable[[], str], python: str = sys.executable
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        self.python = python
        self._webhook_key = webhook_key
        self.queue = JobQueue(workspace)
        self.supervisor = Supervisor(workspace, "job")

    @property
    def max_jobs(self) -> int:
        return max_jobs(self.settings.local_max_jobs)

    def lock(self, name: str) -> AbstractContextManager[None]:
        """The job's lock: held by every read-modify-write of its status by the platform."""
        return file_lock(self.workspace.locks / f"job-{name}.lock")

    def schedule(self, check: str | None = None) -> list[str]:
        """Restart (or fail) jobs whose process is gone, then start waiting jobs while fewer than
        ``max_jobs`` run. ``check`` names one more job to look at (one whose pid file is gone too).
        Returns the jobs started from the queue."""
        started: list[str] = []
        with self.queue.scheduling():
            candidates = self.supervisor.recorded()
            if check is not None and check not in candidates:
                candidates.append(check)
            active = sum(1 for name in candidates if self.supervisor.alive(name) or self._recover(name))
            for name in self.queue.waiting():
                if active >= self.max_jobs:
                    break
                status = read_status(self.workspace.job_dir(name)) or JobStatusRecord()
                if status.status.is_terminal or status.was_started:
                    self.queue.drop(name)  # ended or started already: a stale entry
                    continue
                if self.queue.claim(name) and self._launch(name):
                    started.append(name)
                    active += 1
        return started

    def _recover(self, name: str) -> bool:
        """A started job whose process is gone: restart it from its checkpoint (True), or, with no restart
        left, fail it. False too when it ended meanwhile or never started."""
        directory = self.workspace.job_dir(name)
        with self.lock(name):
            status = read_status(directory)
            if status is None or not status.was_started:
                if status is not None and self.queue.position(name) is None:
                    self.queue.enqueue(name)  # claimed but never started (its starter died): wait again
                return False
            self.supervisor.stop(name, timeout_s=STRAY_STOP_TIMEOUT_S)  # stray children of the group, if any
            if status.status.is_terminal:
                return False
            allowed = max(self.settings.local_job_restarts, 0)
            run_id = status.mlflow_run_id
            if status.restarts >= allowed:
                reason = KILLED_REASON
                if status.restarts:
                    reason += f"; gave up after {status.restarts} restarts"
                write_status(directory, status.changed(**ended(JobStatus.FAILED, reason)))
                log.warning("job %s: %s", name, reason)
                restarted = False
            else:
                restart = RestartEntry(restart=status.restarts + 1, at=datetime.now(UTC), after_attempt=status.attempt)
                progress = (
                    f"restarting ({restart.restart} of {allowed}): {KILLED_REASON}; resuming from its latest checkpoint"
                )
                status = status.changed(
                    restarts=restart.restart,
                    restart_log=[*status.restart_log, restart],
                    progress=progress,
                    mlflow_run_id=None,  # the next attempt tracks its own run
                )
                write_status(directory, status)
                log.warning("job %s: %s; restart %s of %s", name, KILLED_REASON, restart.restart, allowed)
                restarted = self._launch(name, resume=True)
        # The attempt that died cannot end its own MLflow run.
        end_run(self.workspace.tracking_uri, name, run_id, "FAILED")
        return restarted

    def _launch(self, name: str, *, resume: bool = False) -> bool:
        """Start the job's process (attempt n+1); the status records the attempt before the process can
        write to it. False, with the job Failed, when the process cannot start."""
        directory = self.workspace.job_dir(name)
        if resume:
            spec = read_spec(directory)
            if spec is not None:
                # The recipe continues from the latest complete checkpoint under <output_dir>/checkpoints/.
                spec.training.resume = True
                write_spec(directory, spec)
        status = read_status(directory) or JobStatusRecord()
        status = status.changed(attempt=status.attempt + 1, launched_at=datetime.now(UTC))
        write_status(directory, status)
        try:
            proc = self.supervisor.start(
                name,
                [self.python, "-m", "local.platform.jobrunner", str(directory / SPEC_FILE)],
                log_path=directory / LOG_FILE,
                cwd=directory,
                env=self._env(),
            )
        except OSError as exc:
            reason = f"could not start the job process: {exc}"
            write_status(directory, status.changed(**ended(JobStatus.FAILED, reason)))
            log.error("job %s: %s", name, reason)
            return False
        log.info("job %s: attempt %s started (pid %s)", name, status.attempt, proc.pid)
        return True

    def _env(self) -> dict[str, str]:
        # The webhook key reaches the job through its environment only: never argv, never a file.
        return child_env(
            {
                "AUTOPILOT_WEBHOOK_URL": self.settings.webhook_url,
                "AUTOPILOT_WEBHOOK_KEY": self._webhook_key(),
                # What a job needs to start the next one as it ends.
                "AUTOPILOT_WORKDIR": str(self.workspace.workdir.resolve()),
                "AUTOPILOT_LOCAL_MAX_JOBS": str(self.settings.local_max_jobs),
                "AUTOPILOT_LOCAL_JOB_RESTARTS": str(self.settings.local_job_restarts),
                "PYTHONUNBUFFERED": "1",
                # Tensors of many sizes (packed rows vary in length every step) fragment glibc's heap, which
                # then never shrinks: from 64 KiB up, allocations get their own mappings, returned on free.
                "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", "65536"),
            },
            sharing=self.max_jobs,
        )
