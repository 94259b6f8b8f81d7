"""The local platform's workspace directory: where jobs, endpoints, the MLflow store and pid files live.

Layout (under ``settings.workdir``)::

    platform/mlflow.db                 MLflow tracking store and model registry (SQLite)
    platform/mlartifacts/              MLflow artifacts (metrics plots, logged files)
    platform/jobs/<job>/               spec.json, status.json, job.log, output/ (trained_model/)
    platform/endpoints/<endpoint>/     state.json, keys.json (0600), server.log, stats.json
    platform/locks/                    advisory file locks (register, deploy, the job queue)
    platform/queue/                    jobs waiting for a slot, one empty file each (see jobqueue.py)
    models/                            foundation model cache (materialised once)
    pids/<kind>-<name>.pid             every process the app started, so ``autopilot down`` stops them

The files are written atomically and locked where two processes change them (``local/common/statefiles.py``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from shared.settings import TRAIN_STREAMS_SETTING

# Job, model and endpoint names become directory names: no separators, no dot-dot, bounded length.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


SQLITE_BUSY_TIMEOUT_S = 30


def safe_name(name: str) -> bool:
    return bool(_NAME_RE.match(name)) and ".." not in name


@dataclass(frozen=True)
class Workspace:
    workdir: Path

    @property
    def root(self) -> Path:
        return self.workdir / "platform"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def tracking_uri(self) -> str:
        # Every job, the registry and the platform write to this one SQLite file, which takes one writer at a
        # time: a writer waits up to ``timeout`` seconds for the lock (sqlite3's default is 5) before
        # "database is locked"; ``mlflow_retry`` retries past that.
        return f"sqlite:///{self.mlflow_db}?timeout={SQLITE_BUSY_TIMEOUT_S}"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def endpoints(self) -> Path:
        return self.root / "endpoints"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def models_cache(self) -> Path:
        return self.workdir / "models"

    @property
    def pids(self) -> Path:
        return self.workdir / "pids"

    def job_dir(self, name: str) -> Path:
        return self.jobs / name

    def endpoint_dir(self, name: str) -> Path:
        return self.endpoints / name

    def pid_file(self, kind: str, name: str) -> Path:
        return self.pids / f"{kind}-{name}.pid"

    def ensure(self) -> None:
        for path in (self.root, self.jobs, self.endpoints, self.locks, self.pids, self.artifacts):
            path.mkdir(parents=True, exist_ok=True)


def project_root() -> Path:
    """The directory holding the ``shared`` package, so ``python -m shared...`` works from any cwd."""
    return Path(__file__).resolve().parents[3]


# On a machine with two or fewer CPUs a second OpenMP thread costs more in synchronisation than it computes:
# measured on a 2-vCPU VM, one thread trains SmolLM2 at ~70 tokens/s, two threads at ~9. Measured again
# with other processes on the machine (issue 21, docs/benchmarks.md): two threads 8-304 tokens/s (they
# gain when both cores happen to be free, collapse when one is taken), one thread 101-227 and never a
# collapse; OMP_WAIT_POLICY=PASSIVE avoids the collapse and then gains nothing. So the rule stands. An
# explicit OMP_NUM_THREADS always wins. The cores are still used: training and evaluation run one stream
# per CPU, each a thread of its own with one OpenMP thread
# (local/platform/training/streams.py), which waits for nothing.
SMALL_MACHINE_CPUS = 2
STREAMS_SETTING = TRAIN_STREAMS_SETTING


def torch_thread_env(env: dict[str, str], sharing: int = 1) -> dict[str, str]:
    """Thread settings for a torch process started by the platform (job or endpoint); ``sharing`` processes
    of its kind may run at once (the job queue's slots), so each gets its share of the cores."""
    if "OMP_NUM_THREADS" in env:
        return {}
    cpus = os.cpu_count() or 1
    if cpus <= SMALL_MACHINE_CPUS:
        streams = {} if STREAMS_SETTING in env else {STREAMS_SETTING: str(max(1, cpus // sharing))}
        return {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **streams}
    if sharing > 1:
        threads = max(1, cpus // sharing)  # N jobs with every core each would oversubscribe N times over
    else:
        return {}
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def child_env(extra: dict[str, str] | None = None, *, sharing: int = 1) -> dict[str, str]:
    """The environment for a job or endpoint process: ours, with the project importable."""
    env = dict(os.environ)
    root = str(project_root())
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(torch_thread_env(env, sharing))
    env.update(extra or {})
    return env
