"""Local fine-tuning jobs: one detached process per job, its spec and status in ``jobs/<name>/``.

``spec.json`` is written at submit (everything the job process needs, no secrets); ``status.json`` is
written by the job process (atomically) as it moves Queued -> Running -> Completed | Failed | Canceled, and
by the platform when it starts the job or finds its process gone while the status still says it runs.
Submitting never waits on the job: materialising the model and training happen in the job process.

At most ``AUTOPILOT_LOCAL_MAX_JOBS`` jobs run at once; the others stay Queued and start in submission order
(``jobqueue.py``). A job whose process dies without reporting (killed, out of memory) is started again
with ``"resume": true`` in its training spec, so the recipe continues from its latest checkpoint, at most
``AUTOPILOT_LOCAL_JOB_RESTARTS`` times; then it is Failed. Each restart is kept in ``status.json``
(``restarts``, ``restart_log``) and shown in the job's progress line.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.common import processes
from local.platform.eventpost import LOCAL_TOPIC
from local.platform.jobqueue import JobQueue, max_jobs
from local.platform.mlflow_retry import retry_locked
from local.platform.training.spec import HISTORY_FILE
from local.platform.workspace import (
    Workspace,
    child_env,
    file_lock,
    read_json,
    safe_name,
    write_json_atomic,
)
from shared.exceptions import NotFoundError, PlatformError
from shared.naming import TAG_RUN_ID, is_managed
from shared.platform.port import JobInfo, JobRequest, JobStatus
from shared.settings import Settings

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
STATUS_FILE = "status.json"
LOG_FILE = "job.log"
OUTPUT_DIR = "output"
TRAINED_MODEL = "trained_model"
KILLED_REASON = "job process exited unexpectedly (killed?)"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _was_started(status: dict[str, Any]) -> bool:
    """Whether a job process was started for this status (``attempt`` is written before each start)."""
    return bool(status.get("attempt")) or JobStatus.parse(status.get("status")) not in {
        JobStatus.QUEUED,
        JobStatus.NOT_STARTED,
    }


def _float_metrics(raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict):
        return {}
    out: dict[str, float] = {}
    for key, value in raw.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[str(key)] = float(value)
    return out


def _history(raw: dict[str, Any] | None) -> list[dict[str, float]]:
    """The recipe's short loss curve (``HISTORY_FILE``), numbers only; nothing when absent or unreadable."""
    points = (raw or {}).get("points")
    if not isinstance(points, list):
        return []
    return [m for point in points if (m := _float_metrics(point)) and "step" in m]


class Jobs:
    def __init__(
        self,
        workspace: Workspace,
        settings: Settings,
        *,
        webhook_key: Callable[[], str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        self.python = python
        self._webhook_key = webhook_key or (lambda: settings.webhook_key)
        self.queue = JobQueue(workspace)

    @property
    def max_jobs(self) -> int:
        return max_jobs(self.settings.local_max_jobs)

    def _dir(self, name: str) -> Path:
        if not safe_name(name):
            raise NotFoundError(f"no job named {name!r}")
        return self.workspace.job_dir(name)

    def pid_file(self, name: str) -> Path:
        return self.workspace.pid_file("job", name)

    def read_spec(self, name: str) -> dict[str, Any] | None:
        return read_json(self._dir(name) / SPEC_FILE)

    def read_status(self, name: str) -> dict[str, Any] | None:
        return read_json(self._dir(name) / STATUS_FILE)

    def log_path(self, name: str) -> Path:
        return self._dir(name) / LOG_FILE

    # -- submit

    def _spec(self, request: JobRequest, directory: Path) -> dict[str, Any]:
        device = "cuda" if request.compute.cluster.lower() == "local-cuda" else "cpu"
        training = {
            "job_name": request.name,
            "model_name": request.foundation_model.name,
            "output_dir": str(directory / OUTPUT_DIR),
            "params": request.params.model_dump(mode="json"),  # the typed inputs, as the job will read them
            "train_file": request.train_data,
            "validation_file": request.validation_data,
            "test_file": request.test_data,
            "device": device,
            "mlflow_tracking_uri": self.workspace.tracking_uri,
            "experiment_name": request.experiment_name,
            "run_name": request.name,
            "tags": dict(request.tags),
        }
        return {
            "job_name": request.name,
            "display_name": request.display_name,
            "experiment_name": request.experiment_name,
            "tags": dict(request.tags),
            "foundation_model": {
                "name": request.foundation_model.name,
                "version": request.foundation_model.version,
                "id": request.foundation_model.id,
            },
            "compute": {"cluster": request.compute.cluster, "gpus_per_node": request.compute.gpus_per_node},
            "models_cache": str(self.workspace.models_cache),
            "artifact_root": str(self.workspace.artifacts),
            "pid_file": str(self.pid_file(request.name)),
            "topic": self.settings.workspace_topic or LOCAL_TOPIC,
            "submitted_at": _now(),
            "workdir": str(self.workspace.workdir.resolve()),
            "training": training,
        }

    def submit(self, request: JobRequest) -> JobInfo:
        """Queue the job (it starts at once when a slot is free), or return the one already submitted under
        this name for the same run."""
        directory = self._dir(request.name)
        self.workspace.ensure()
        with file_lock(self._job_lock(request.name)):
            spec = read_json(directory / SPEC_FILE)
            if spec is not None:
                theirs = (spec.get("tags") or {}).get(TAG_RUN_ID)
                if theirs != request.tags.get(TAG_RUN_ID):
                    raise PlatformError(f"a job named {request.name} already exists for another run", code="Conflict")
                log.info("job %s: already submitted; returning its status", request.name)
                return self.get(request.name)
            directory.mkdir(parents=True, exist_ok=True)
            # The spec first: a job with a spec and no status yet reads as queued.
            write_json_atomic(directory / SPEC_FILE, self._spec(request, directory))
            write_json_atomic(
                directory / STATUS_FILE, {"status": JobStatus.QUEUED.value, "queued_at": _now(), "progress": "queued"}
            )
            self.queue.enqueue(request.name)
        started = self.schedule()
        log.info("job %s: %s", request.name, "started" if request.name in started else "queued")
        return JobInfo(name=request.name, status=JobStatus.QUEUED, tags=dict(request.tags), progress="queued")

    # -- the queue

    def _job_lock(self, name: str) -> Path:
        return self.workspace.locks / f"job-{name}.lock"

    def _process_alive(self, name: str) -> bool:
        record = processes.read_pid_file(self.pid_file(name))
        return record is not None and processes.is_alive(record)

    def _recorded_jobs(self) -> list[str]:
        """Jobs with a pid file: running, or lost without the process removing its record."""
        pids = self.workspace.pids
        if not pids.is_dir():
            return []
        names = (p.stem.removeprefix("job-") for p in pids.glob("job-*.pid"))
        return sorted(name for name in names if safe_name(name))

    def schedule(self, check: str | None = None) -> list[str]:
        """Restart (or fail) jobs whose process is gone, then start waiting jobs while fewer than
        ``max_jobs`` run. ``check`` names one more job to look at (one whose pid file is gone too).
        Returns the jobs started from the queue."""
        started: list[str] = []
        with self.queue.scheduling():
            candidates = self._recorded_jobs()
            if check is not None and check not in candidates:
                candidates.append(check)
            active = 0
            for name in candidates:
                if self._process_alive(name) or self._recover(name):
                    active += 1
            for name in self.queue.waiting():
                if active >= self.max_jobs:
                    break
                status = self.read_status(name) or {}
                if JobStatus.parse(status.get("status")).is_terminal or _was_started(status):
                    self.queue.drop(name)  # ended or started already: a stale entry
                    continue
                if self.queue.claim(name) and self._launch(name):
                    started.append(name)
                    active += 1
        return started

    def _recover(self, name: str) -> bool:
        """A started job whose process is gone: restart it from its checkpoint (True), or, with no restart
        left, fail it. False too when it ended meanwhile or never started."""
        directory = self._dir(name)
        with file_lock(self._job_lock(name)):
            status = read_json(directory / STATUS_FILE)
            if status is None or not _was_started(status):
                if status is not None and self.queue.position(name) is None:
                    self.queue.enqueue(name)  # claimed but never started (its starter died): wait again
                return False
            processes.stop_pid_file(self.pid_file(name), timeout_s=2.0)  # stray children of the group, if any
            if JobStatus.parse(status.get("status")).is_terminal:
                return False
            restarts = int(status.get("restarts") or 0)
            allowed = max(self.settings.local_job_restarts, 0)
            run_id = status.get("mlflow_run_id")
            if restarts >= allowed:
                reason = KILLED_REASON if restarts == 0 else f"{KILLED_REASON}; gave up after {restarts} restarts"
                status.update(status=JobStatus.FAILED.value, error=reason, finished_at=_now())
                status["progress"] = f"failed: {reason}"
                write_json_atomic(directory / STATUS_FILE, status)
                log.warning("job %s: %s", name, reason)
                restarted = False
            else:
                restart = {"restart": restarts + 1, "at": _now(), "after_attempt": status.get("attempt")}
                status.update(
                    restarts=restarts + 1,
                    restart_log=[*(status.get("restart_log") or []), restart],
                    progress=f"restarting ({restarts + 1} of {allowed}): {KILLED_REASON}; resuming from its "
                    "latest checkpoint",
                    mlflow_run_id=None,  # the next attempt tracks its own run
                )
                write_json_atomic(directory / STATUS_FILE, status)
                log.warning("job %s: %s; restart %s of %s", name, KILLED_REASON, restarts + 1, allowed)
                restarted = self._launch(name, resume=True)
        self._fail_mlflow_run(name, run_id)  # the attempt that died cannot end its own MLflow run
        return restarted

    def _launch(self, name: str, *, resume: bool = False) -> bool:
        """Start the job's process (attempt n+1); the status records the attempt before the process can
        write to it. False, with the job Failed, when the process cannot start."""
        directory = self._dir(name)
        if resume:
            spec = read_json(directory / SPEC_FILE) or {}
            if isinstance(spec.get("training"), dict):
                # The recipe continues from the latest complete checkpoint under <output_dir>/checkpoints/.
                spec["training"]["resume"] = True
                write_json_atomic(directory / SPEC_FILE, spec)
        status = read_json(directory / STATUS_FILE) or {"status": JobStatus.QUEUED.value}
        status.update(attempt=int(status.get("attempt") or 0) + 1, launched_at=_now())
        write_json_atomic(directory / STATUS_FILE, status)
        # The webhook key reaches the job through its environment only: never argv, never a file.
        env = child_env(
            {
                "AUTOPILOT_WEBHOOK_URL": self.settings.webhook_url,
                "AUTOPILOT_WEBHOOK_KEY": self._webhook_key(),
                # What a job needs to start the next one as it ends (see jobqueue.py).
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
        try:
            proc = processes.start_detached(
                [self.python, "-m", "local.platform.jobrunner", str(directory / SPEC_FILE)],
                log_path=directory / LOG_FILE,
                pid_path=self.pid_file(name),
                name=f"job {name}",
                cwd=directory,
                env=env,
            )
        except OSError as exc:
            reason = f"could not start the job process: {exc}"
            status.update(status=JobStatus.FAILED.value, error=reason, finished_at=_now(), progress=f"failed: {reason}")
            write_json_atomic(directory / STATUS_FILE, status)
            log.error("job %s: %s", name, reason)
            return False
        log.info("job %s: attempt %s started (pid %s)", name, status["attempt"], proc.pid)
        return True

    # -- inspect

    def get(self, name: str) -> JobInfo:
        directory = self._dir(name)
        spec = read_json(directory / SPEC_FILE)
        if spec is None:
            raise NotFoundError(f"no job named {name!r}")
        status = read_json(directory / STATUS_FILE) or {"status": JobStatus.QUEUED.value}
        current = JobStatus.parse(status.get("status"))
        if not current.is_terminal and (not _was_started(status) or not self._process_alive(name)):
            # Waiting, or its process is gone: a slot may be free, or the job needs restarting.
            self.schedule(check=name)
            status = read_json(directory / STATUS_FILE) or status
            current = JobStatus.parse(status.get("status"))
        progress = status.get("progress")
        if not current.is_terminal and not _was_started(status):
            position = self.queue.position(name)
            if position is not None:
                progress = f"queued: position {position}, at most {self.max_jobs} job(s) run at once"
        return JobInfo(
            name=name,
            status=current,
            tags=dict(spec.get("tags") or {}),
            error=status.get("error"),
            metrics=_float_metrics(status.get("metrics")),
            progress=progress,
            history=_history(read_json(directory / OUTPUT_DIR / HISTORY_FILE)),
        )

    def list(self, limit: int) -> list[JobInfo]:
        """App-tagged jobs, newest submitted first; a job directory without a readable spec is skipped."""
        root = self.workspace.jobs
        specs = []
        for directory in root.iterdir() if root.is_dir() else []:
            if not safe_name(directory.name):
                continue
            spec = read_json(directory / SPEC_FILE)
            if spec is not None and is_managed(spec.get("tags")):
                specs.append((str(spec.get("submitted_at") or ""), directory.name))
        found = []
        for _, name in sorted(specs, reverse=True)[: max(limit, 0)]:
            try:
                found.append(self.get(name))
            except NotFoundError:
                continue  # removed meanwhile
        return found

    def cancel(self, name: str) -> None:
        """Stop the job (or take it out of the queue) and record it Canceled, unless it already ended;
        missing is success. A restart never follows: ``_recover`` leaves ended jobs alone."""
        directory = self._dir(name)
        with file_lock(self._job_lock(name)):
            status = read_json(directory / STATUS_FILE)
            if status is None or JobStatus.parse(status.get("status")).is_terminal:
                return
            status.update(status=JobStatus.CANCELED.value, error="canceled on request", finished_at=_now())
            status["progress"] = "canceled"
            write_json_atomic(directory / STATUS_FILE, status)
            self.queue.drop(name)
        processes.stop_pid_file(self.pid_file(name), timeout_s=5.0)
        log.info("job %s: canceled", name)
        self._end_mlflow_run(name, status.get("mlflow_run_id"), "KILLED")
        self.schedule()  # its slot is free: the next queued job may start

    def _fail_mlflow_run(self, name: str, run_id: Any) -> None:
        self._end_mlflow_run(name, run_id, "FAILED")

    def _end_mlflow_run(self, name: str, run_id: Any, end: str) -> None:
        """A killed job cannot end its own MLflow run; without this it would show RUNNING forever."""
        if not run_id:
            return
        try:
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=self.workspace.tracking_uri)
            if retry_locked(lambda: client.get_run(str(run_id)).info.status) == "RUNNING":
                retry_locked(lambda: client.set_terminated(str(run_id), status=end))
        except Exception as exc:  # the ledger already says failed; this is bookkeeping
            log.warning("job %s: could not end MLflow run %s as %s: %s", name, run_id, end, exc)

    def model_output(self, name: str) -> tuple[Path, str | None]:
        """(the MLflow model directory a completed job wrote, its MLflow run id)."""
        info = self.get(name)
        if info.status != JobStatus.COMPLETED:
            raise NotFoundError(f"job {name} is {info.status.value}; only a completed job has a model to register")
        status = self.read_status(name) or {}
        path = Path(str(status.get("model_path") or self._dir(name) / OUTPUT_DIR / TRAINED_MODEL))
        if not (path / "MLmodel").is_file():
            raise NotFoundError(f"job {name} completed but wrote no MLflow model at {path}")
        run_id = status.get("mlflow_run_id")
        return path, str(run_id) if run_id else None
