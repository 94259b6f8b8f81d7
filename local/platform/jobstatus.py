"""A local job's ``status.json``: its one type (``JobStatusRecord``) and the ways it is written.

Two kinds of process write it. The platform (``jobs.py``, ``jobscheduler.py``) writes it when a job is
queued, launched, canceled, or found with its process gone, each time as a read-modify-write under the job's
lock (``locks/job-<name>.lock``). The job process (``jobrunner.py``) owns it while it runs: it keeps the
record in memory and rewrites the file on every change (``LiveStatus``). Every write replaces the file
atomically, so a reader never sees half of one.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from local.common.statefiles import StateFile
from shared.platform.port import JobStatus

STATUS_FILE = "status.json"

Scalar = str | int | float | bool | None


class RestartEntry(BaseModel):
    """One restart of a job whose process died without reporting."""

    model_config = ConfigDict(extra="forbid")

    restart: int
    at: datetime
    after_attempt: int | None = None
    resumed_from_step: int | None = None  # once the restarted attempt has loaded its checkpoint


class MemoryRecord(BaseModel):
    """The job process's resident memory: now, at its peak, and once warmed up (``jobmemory.py``)."""

    model_config = ConfigDict(extra="forbid")

    rss_mb: float
    step: int
    peak_rss_mb: float
    warm_rss_mb: float | None = None
    warm_step: int | None = None


class JobStatusRecord(StateFile):
    """Queued -> Running -> Completed | Failed | Canceled, with what each attempt reported."""

    schema_version: Literal[1] = 1
    status: JobStatus = JobStatus.QUEUED
    progress: str | None = None  # the one line ``autopilot status`` shows
    progress_detail: dict[str, Scalar] | None = None  # the recipe's last progress update, as it sent it
    error: str | None = None
    queued_at: datetime | None = None
    attempt: int = 0  # written before each process start
    launched_at: datetime | None = None
    pid: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    duration_s: float | None = None
    restarts: int = 0
    restart_log: list[RestartEntry] = []
    resumed_from_step: int | None = None  # this attempt's, once it has loaded its checkpoint
    running_posted: bool = False  # the Running event was delivered (a restarted attempt does not repeat it)
    mlflow_run_id: str | None = None  # so whoever finds the job killed can end its MLflow run too
    memory: MemoryRecord | None = None
    metrics: dict[str, float] = {}
    notes: list[str] = []
    model_path: str | None = None

    @classmethod
    def queued(cls) -> JobStatusRecord:
        return cls(status=JobStatus.QUEUED, queued_at=datetime.now(UTC), progress="queued")

    @property
    def was_started(self) -> bool:
        """Whether a job process was started for this status (``attempt`` is written before each start)."""
        return bool(self.attempt) or self.status not in {JobStatus.QUEUED, JobStatus.NOT_STARTED}


def ended(final: JobStatus, reason: str, *, progress: str | None = None) -> dict[str, Any]:
    """The fields of a job that ends Failed or Canceled: the reason, the time, and a progress line saying so."""
    return {
        "status": final,
        "error": reason,
        "finished_at": datetime.now(UTC),
        "progress": progress or f"{final.value.lower()}: {reason}",
    }


def read_status(directory: Path) -> JobStatusRecord | None:
    return JobStatusRecord.load(directory / STATUS_FILE)


def write_status(directory: Path, record: JobStatusRecord) -> None:
    record.save(directory / STATUS_FILE)


class LiveStatus:
    """The job process's ``status.json``: the record in memory, rewritten on every change (from any thread)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.record = read_status(directory) or JobStatusRecord()
        self._lock = threading.Lock()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.record = self.record.changed(**fields, updated_at=datetime.now(UTC))
            write_status(self.directory, self.record)
