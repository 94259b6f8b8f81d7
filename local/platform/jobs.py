"""Local fine-tuning jobs: one detached process per job, its spec and status in ``jobs/<name>/``.

``spec.json`` is written once at submit (everything the job process needs, no secrets); ``status.json`` is
written by the job process (atomically) as it moves Queued -> Running -> Completed | Failed | Canceled, and
by :meth:`Jobs.get` when it finds the process gone while the status still says it runs. Submitting never
waits on the job: materialising the model and training happen in the job process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from local.common import processes
from local.platform.eventpost import LOCAL_TOPIC
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
from shared.naming import TAG_RUN_ID
from shared.platform.port import JobInfo, JobRequest, JobStatus
from shared.settings import Settings

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
STATUS_FILE = "status.json"
LOG_FILE = "job.log"
OUTPUT_DIR = "output"
TRAINED_MODEL = "trained_model"
KILLED_REASON = "job process exited unexpectedly (killed?)"
# A job whose process has not been recorded yet (the submitting process is between start and pid file)
# is given this long before it counts as lost.
START_GRACE = timedelta(minutes=2)


def _now() -> str:
    return datetime.now(UTC).isoformat()


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
            "training": training,
        }

    def submit(self, request: JobRequest) -> JobInfo:
        """Start the job, or return the one already submitted under this name for the same run."""
        directory = self._dir(request.name)
        self.workspace.ensure()
        with file_lock(self.workspace.locks / f"job-{request.name}.lock"):
            spec = read_json(directory / SPEC_FILE)
            if spec is not None:
                theirs = (spec.get("tags") or {}).get(TAG_RUN_ID)
                if theirs != request.tags.get(TAG_RUN_ID):
                    raise PlatformError(f"a job named {request.name} already exists for another run", code="Conflict")
                log.info("job %s: already submitted; returning its status", request.name)
                return self.get(request.name)
            directory.mkdir(parents=True, exist_ok=True)
            spec = self._spec(request, directory)
            # The spec first: a job with a spec and no status yet reads as queued.
            write_json_atomic(directory / SPEC_FILE, spec)
            write_json_atomic(directory / STATUS_FILE, {"status": JobStatus.QUEUED.value, "queued_at": _now()})
            # The webhook key reaches the job through its environment only: never argv, never a file.
            env = child_env(
                {
                    "AUTOPILOT_WEBHOOK_URL": self.settings.webhook_url,
                    "AUTOPILOT_WEBHOOK_KEY": self._webhook_key(),
                    "PYTHONUNBUFFERED": "1",
                }
            )
            proc = processes.start_detached(
                [self.python, "-m", "local.platform.jobrunner", str(directory / SPEC_FILE)],
                log_path=directory / LOG_FILE,
                pid_path=self.pid_file(request.name),
                name=f"job {request.name}",
                cwd=directory,
                env=env,
            )
        log.info("job %s: started (pid %s)", request.name, proc.pid)
        return JobInfo(name=request.name, status=JobStatus.QUEUED, tags=dict(request.tags), progress="queued")

    # -- inspect

    def get(self, name: str) -> JobInfo:
        directory = self._dir(name)
        spec = read_json(directory / SPEC_FILE)
        if spec is None:
            raise NotFoundError(f"no job named {name!r}")
        status = read_json(directory / STATUS_FILE) or {"status": JobStatus.QUEUED.value}
        current = JobStatus.parse(status.get("status"))
        if not current.is_terminal and not self._running(name, spec):
            status = self._mark_lost(name) or status
            current = JobStatus.parse(status.get("status"))
        return JobInfo(
            name=name,
            status=current,
            tags=dict(spec.get("tags") or {}),
            error=status.get("error"),
            metrics=_float_metrics(status.get("metrics")),
            progress=status.get("progress"),
            history=_history(read_json(directory / OUTPUT_DIR / HISTORY_FILE)),
        )

    def _running(self, name: str, spec: dict[str, Any]) -> bool:
        record = processes.read_pid_file(self.pid_file(name))
        if record is not None:
            return processes.is_alive(record)
        submitted = spec.get("submitted_at")
        if isinstance(submitted, str):
            # No pid file yet: the submitting process may be between starting the job and recording it.
            return datetime.now(UTC) - datetime.fromisoformat(submitted) < START_GRACE
        return False

    def _mark_lost(self, name: str) -> dict[str, Any] | None:
        """The process is gone: unless it wrote an end state meanwhile, the job failed."""
        directory = self._dir(name)
        with file_lock(self.workspace.locks / f"job-{name}.lock"):
            status = read_json(directory / STATUS_FILE)
            if status is None or JobStatus.parse(status.get("status")).is_terminal:
                return status
            status.update(status=JobStatus.FAILED.value, error=KILLED_REASON, finished_at=_now())
            status["progress"] = f"failed: {KILLED_REASON}"
            write_json_atomic(directory / STATUS_FILE, status)
        processes.stop_pid_file(self.pid_file(name), timeout_s=2.0)  # stray children of the group, if any
        log.warning("job %s: %s", name, KILLED_REASON)
        self._fail_mlflow_run(name, status.get("mlflow_run_id"))
        return status

    def cancel(self, name: str) -> None:
        """Stop the job's process and record it Canceled, unless it already ended; missing is success."""
        directory = self._dir(name)
        with file_lock(self.workspace.locks / f"job-{name}.lock"):
            status = read_json(directory / STATUS_FILE)
            if status is None or JobStatus.parse(status.get("status")).is_terminal:
                return
            status.update(status=JobStatus.CANCELED.value, error="canceled on request", finished_at=_now())
            status["progress"] = "canceled"
            write_json_atomic(directory / STATUS_FILE, status)
        processes.stop_pid_file(self.pid_file(name), timeout_s=5.0)
        log.info("job %s: canceled", name)
        self._end_mlflow_run(name, status.get("mlflow_run_id"), "KILLED")

    def _fail_mlflow_run(self, name: str, run_id: Any) -> None:
        self._end_mlflow_run(name, run_id, "FAILED")

    def _end_mlflow_run(self, name: str, run_id: Any, end: str) -> None:
        """A killed job cannot end its own MLflow run; without this it would show RUNNING forever."""
        if not run_id:
            return
        try:
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=self.workspace.tracking_uri)
            if client.get_run(str(run_id)).info.status == "RUNNING":
                client.set_terminated(str(run_id), status=end)
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
