"""The local job queue: at most N training jobs run at once, the others wait and start in submission order.

A waiting job is a file ``platform/queue/<submitted, ns>-<job>``, so listing the folder sorted is the
submission order, and the queue survives the host (or the machine) restarting. Who may start a job is
decided under one cross-process lock (``locks/job-queue.lock``, an ``flock``: the kernel releases it when
its holder dies, so a crash never leaves it held); a job is claimed by renaming its entry away, which
succeeds for one caller only, so no job starts twice.

Two kinds of callers schedule: a job process as it ends (it frees a slot), and the platform whenever
someone reads a job that is waiting or whose process is gone (the app's reconcile timer does, every few
minutes), which also covers a host restart with no job left running to hand on its slot.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from local.common.statefiles import file_lock
from local.platform.workspace import Workspace

QUEUE_DIR = "queue"
CLAIM_FILE = "claimed"
# One job per this many cores and this much memory: a CPU training job uses about two cores' worth of
# matmul threads well, and a SmolLM2-sized job peaks near 3 GiB with its evaluation and merge.
CORES_PER_JOB = 2
MEMORY_PER_JOB = 4 * 1024**3


def total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_max_jobs(cpus: int | None, memory_bytes: int | None) -> int:
    """Jobs that fit the machine: bounded by cores and by memory, never below one."""
    by_cores = (cpus or 1) // CORES_PER_JOB
    by_memory = memory_bytes // MEMORY_PER_JOB if memory_bytes else by_cores
    return max(1, min(by_cores, by_memory))


def max_jobs(configured: int) -> int:
    """``AUTOPILOT_LOCAL_MAX_JOBS`` when positive, else what the machine fits."""
    return configured if configured > 0 else default_max_jobs(os.cpu_count(), total_memory_bytes())


class JobQueue:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    @property
    def directory(self) -> Path:
        return self.workspace.root / QUEUE_DIR

    @contextlib.contextmanager
    def scheduling(self) -> Iterator[None]:
        """Held while deciding which jobs run: counting slots and starting jobs is one step."""
        with file_lock(self.workspace.locks / "job-queue.lock"):
            yield

    def _entries(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if not p.name.startswith("."))

    @staticmethod
    def _job_of(entry: Path) -> str:
        return entry.name.partition("-")[2]

    def enqueue(self, name: str) -> None:
        """Put ``name`` at the end of the queue, unless it waits already (a submit retried)."""
        if self.position(name) is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        entry = self.directory / f"{time.time_ns():020d}-{name}"
        entry.touch(exist_ok=False)

    def waiting(self) -> list[str]:
        """The waiting jobs, first submitted first."""
        return [self._job_of(entry) for entry in self._entries()]

    def position(self, name: str) -> int | None:
        """1 for the next job to start; None when ``name`` does not wait."""
        for index, job in enumerate(self.waiting(), start=1):
            if job == name:
                return index
        return None

    def claim(self, name: str) -> bool:
        """Take ``name`` off the queue for starting it; True for exactly one caller."""
        for entry in self._entries():
            if self._job_of(entry) != name:
                continue
            target = self.workspace.job_dir(name) / CLAIM_FILE
            try:
                os.rename(entry, target)  # atomic: the one caller whose rename succeeds starts the job
            except FileNotFoundError:
                continue
            return True
        return False

    def drop(self, name: str) -> None:
        """Forget ``name`` (it ended, or was started by an earlier claim)."""
        for entry in self._entries():
            if self._job_of(entry) == name:
                entry.unlink(missing_ok=True)
