"""Local fine-tuning jobs: one detached process per job, its spec and status in ``jobs/<name>/``.

``spec.json`` (``jobspec.py``) is written at submit: everything the job process needs, no secrets.
``status.json`` (``jobstatus.py``) moves Queued -> Running -> Completed | Failed | Canceled, written by the
job process (``jobrunner.py``) as it runs and by the platform when it queues, starts, cancels or recovers
the job (``jobscheduler.py``: the queue's slots, restarts from a checkpoint). Submitting never waits on the
job: materialising the model and training happen in the job process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from local.common.statefiles import StateFileError, read_json
from local.platform.jobscheduler import JobScheduler
from local.platform.jobspec import OUTPUT_DIR, JobSpec, read_spec, write_spec
from local.platform.jobstatus import JobStatusRecord, ended, read_status, write_status
from local.platform.mlflow_runs import end_run
from local.platform.training.spec import HISTORY_FILE, LOSS_CURVE_FILE
from local.platform.workspace import Workspace, safe_name
from shared.exceptions import NotFoundError, PlatformError
from shared.naming import TAG_RUN_ID, is_managed
from shared.platform.port import JobInfo, JobRequest, JobStatus, TrainingProgress
from shared.settings import Settings

log = logging.getLogger(__name__)

LOG_FILE = "job.log"
TRAINED_MODEL = "trained_model"
CANCEL_TIMEOUT_S = 5.0


def _number(detail: Mapping[str, Any], key: str) -> float | None:
    value = detail.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def training_progress(detail: Mapping[str, Any] | None, at: datetime | None) -> TrainingProgress | None:
    """The recipe's last step update (``progress_detail``) as the port's progress; None between steps' phases."""
    step = _number(detail or {}, "step")
    if detail is None or step is None:
        return None
    total, tokens = _number(detail, "total_steps"), _number(detail, "trained_tokens")
    return TrainingProgress(
        step=int(step),
        total_steps=int(total) if total is not None else None,
        loss=_number(detail, "loss"),
        tokens_per_second=_number(detail, "tokens_per_second"),
        trained_tokens=int(tokens) if tokens is not None else None,
        train_seconds=_number(detail, "train_seconds"),
        at=at,
    )


def _history(raw: dict[str, Any] | None) -> list[dict[str, float]]:
    """The recipe's short loss curve (``HISTORY_FILE``), numbers only; nothing when absent or unreadable."""
    points = (raw or {}).get("points")
    if not isinstance(points, list):
        return []
    curve = [
        {str(k): float(v) for k, v in point.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        for point in points
        if isinstance(point, dict)
    ]
    return [point for point in curve if "step" in point]


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
        self.scheduler = JobScheduler(workspace, settings, webhook_key or (lambda: settings.webhook_key), python)

    def _dir(self, name: str) -> Path:
        if not safe_name(name):
            raise NotFoundError(f"no job named {name!r}")
        return self.workspace.job_dir(name)

    def log_path(self, name: str) -> Path:
        return self._dir(name) / LOG_FILE

    def read_status(self, name: str) -> JobStatusRecord | None:
        return read_status(self._dir(name))

    def schedule(self) -> list[str]:
        return self.scheduler.schedule()

    def submit(self, request: JobRequest) -> JobInfo:
        """Queue the job (it starts at once when a slot is free), or return the one already submitted under
        this name for the same run."""
        directory = self._dir(request.name)
        self.workspace.ensure()
        with self.scheduler.lock(request.name):
            spec = read_spec(directory)
            if spec is not None:
                if spec.tags.get(TAG_RUN_ID) != request.tags.get(TAG_RUN_ID):
                    raise PlatformError(f"a job named {request.name} already exists for another run", code="Conflict")
                log.info("job %s: already submitted; returning its status", request.name)
                return self.get(request.name)
            directory.mkdir(parents=True, exist_ok=True)
            # The spec first: a job with a spec and no status yet reads as queued.
            write_spec(directory, JobSpec.for_request(request, self.workspace, topic=self.settings.workspace_topic))
            write_status(directory, JobStatusRecord.queued())
            self.scheduler.queue.enqueue(request.name)
        started = self.scheduler.schedule()
        log.info("job %s: %s", request.name, "started" if request.name in started else "queued")
        return JobInfo(name=request.name, status=JobStatus.QUEUED, tags=dict(request.tags), progress="queued")

    def get(self, name: str) -> JobInfo:
        try:
            return self._get(name)
        except StateFileError as exc:  # not a file this app wrote: said, never guessed at
            raise PlatformError(f"job {name}: {exc}", code="UnreadableJobState") from None

    def _get(self, name: str) -> JobInfo:
        directory = self._dir(name)
        spec = read_spec(directory)
        if spec is None:
            raise NotFoundError(f"no job named {name!r}")
        status = read_status(directory) or JobStatusRecord()
        if not status.status.is_terminal and (not status.was_started or not self.scheduler.supervisor.alive(name)):
            # Waiting, or its process is gone: a slot may be free, or the job needs restarting.
            self.scheduler.schedule(check=name)
            status = read_status(directory) or status
        progress = status.progress
        if not status.status.is_terminal and not status.was_started:
            position = self.scheduler.queue.position(name)
            if position is not None:
                progress = f"queued: position {position}, at most {self.scheduler.max_jobs} job(s) run at once"
        return JobInfo(
            name=name,
            status=status.status,
            tags=dict(spec.tags),
            error=status.error,
            metrics=dict(status.metrics),
            progress=progress,
            history=_history(read_json(directory / OUTPUT_DIR / HISTORY_FILE)),
            training=training_progress(status.progress_detail, status.updated_at),
            loss_curve=str(curve) if (curve := directory / OUTPUT_DIR / LOSS_CURVE_FILE).is_file() else None,
        )

    def list(self, limit: int) -> list[JobInfo]:
        """App-tagged jobs, newest submitted first; a job directory without a readable spec is skipped."""
        root = self.workspace.jobs
        specs = []
        for directory in root.iterdir() if root.is_dir() else []:
            if not safe_name(directory.name):
                continue
            try:
                spec = read_spec(directory)
            except StateFileError as exc:
                log.warning("job %s: %s; skipped", directory.name, exc)
                continue
            if spec is not None and is_managed(spec.tags):
                specs.append((spec.submitted_at, directory.name))
        found = []
        for _, name in sorted(specs, reverse=True)[: max(limit, 0)]:
            try:
                found.append(self.get(name))
            except NotFoundError:
                continue  # removed meanwhile
        return found

    def cancel(self, name: str) -> None:
        """Stop the job (or take it out of the queue) and record it Canceled, unless it already ended;
        missing is success. A restart never follows: recovery leaves ended jobs alone."""
        directory = self._dir(name)
        with self.scheduler.lock(name):
            status = read_status(directory)
            if status is None or status.status.is_terminal:
                return
            status = status.changed(**ended(JobStatus.CANCELED, "canceled on request", progress="canceled"))
            write_status(directory, status)
            self.scheduler.queue.drop(name)
        self.scheduler.supervisor.stop(name, timeout_s=CANCEL_TIMEOUT_S)
        log.info("job %s: canceled", name)
        end_run(self.workspace.tracking_uri, name, status.mlflow_run_id, "KILLED")
        self.scheduler.schedule()  # its slot is free: the next queued job may start

    def model_output(self, name: str) -> tuple[Path, str | None]:
        """(the MLflow model directory a completed job wrote, its MLflow run id)."""
        info = self.get(name)
        if info.status != JobStatus.COMPLETED:
            raise NotFoundError(f"job {name} is {info.status.value}; only a completed job has a model to register")
        status = self.read_status(name) or JobStatusRecord()
        path = Path(status.model_path or self._dir(name) / OUTPUT_DIR / TRAINED_MODEL)
        if not (path / "MLmodel").is_file():
            raise NotFoundError(f"job {name} completed but wrote no MLflow model at {path}")
        return path, status.mlflow_run_id
