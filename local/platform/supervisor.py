"""The one supervisor of the platform's processes: a job's training process, an endpoint's server.

Each process is started detached (its own process group, outliving whoever started it) and recorded in
``<workdir>/pids/<kind>-<name>.pid``, so ``autopilot down`` stops it with everything else and any process
(the host, the CLI, another job) can tell whether it still runs. Liveness and stopping are
``local.common.processes``: a pid reused by an unrelated process is never taken for ours.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from local.common import processes
from local.platform.workspace import Workspace, safe_name

log = logging.getLogger(__name__)


class Supervisor:
    """The processes of one ``kind`` (``job``, ``endpoint``), each under a name."""

    def __init__(self, workspace: Workspace, kind: str) -> None:
        self.workspace = workspace
        self.kind = kind

    def pid_file(self, name: str) -> Path:
        return self.workspace.pid_file(self.kind, name)

    def start(
        self, name: str, argv: Sequence[str], *, log_path: Path, cwd: Path, env: Mapping[str, str]
    ) -> subprocess.Popen[bytes]:
        """Start ``name``'s process (output appended to ``log_path``) and record it; OSError if it cannot."""
        return processes.start_detached(
            argv, log_path=log_path, pid_path=self.pid_file(name), name=f"{self.kind} {name}", cwd=cwd, env=env
        )

    def alive(self, name: str) -> bool:
        record = processes.read_pid_file(self.pid_file(name))
        return record is not None and processes.is_alive(record)

    def stop(self, name: str, timeout_s: float = 5.0) -> bool:
        """Stop ``name``'s process group (stray children included) and forget it; True when one ran."""
        return processes.stop_pid_file(self.pid_file(name), timeout_s=timeout_s)

    def recorded(self) -> list[str]:
        """The names with a pid file: running, or lost without the process removing its record."""
        directory = self.workspace.pids
        if not directory.is_dir():
            return []
        prefix = f"{self.kind}-"
        names = (path.stem.removeprefix(prefix) for path in directory.glob(f"{prefix}*.pid"))
        return sorted(name for name in names if safe_name(name))

    def forget_self(self, name: str) -> None:
        """Called by the recorded process as it exits: remove its own record (never a successor's)."""
        path = self.pid_file(name)
        record = processes.read_pid_file(path)
        if record is not None and record.pid == os.getpid():
            path.unlink(missing_ok=True)
