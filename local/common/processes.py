"""The processes the local life cycle starts: detached starts, pid files, liveness, group stops and ports.

A detached process leads its own process group (``start_new_session``), so stopping it also stops what it
started. A pid file records the pid, its group and the process's start time (psutil's ``create_time``), so
a stale file whose pid was reused by an unrelated process is recognised and never signalled. Liveness and
the members of a group are read with psutil, the same on Linux and macOS.

Local jobs and endpoints record their processes as ``<workdir>/pids/<kind>-<name>.pid`` (see
``local.platform.supervisor``); ``autopilot down`` stops all of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import psutil
from pydantic import ConfigDict

from local.common.exceptions import StartTimeoutError
from local.common.statefiles import StateFile, StateFileError

log = logging.getLogger(__name__)

PIDS_DIRNAME = "pids"
LOOPBACK = "127.0.0.1"


class ProcessRecord(StateFile):
    """A process the app started, as its pid file holds it: ``pgid`` is set when it leads its own group;
    ``started`` is its start time (psutil ``create_time``), None only for a record made by hand."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    pid: int
    pgid: int | None = None
    started: float | None = None
    name: str = ""


def pids_dir(workdir: Path) -> Path:
    """Where job and endpoint processes record themselves (``<workdir>/pids/*.pid``)."""
    return workdir / PIDS_DIRNAME


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def record_for(pid: int, name: str = "", own_group: bool = True) -> ProcessRecord:
    """A record of a running process (its start time read now)."""
    return ProcessRecord(pid=pid, pgid=pid if own_group else None, started=_create_time(pid), name=name)


def write_pid_file(path: Path, record: ProcessRecord) -> None:
    record.save(path)


def read_pid_file(path: Path) -> ProcessRecord | None:
    """The record in ``path``; None when the file is missing or is not a pid record (never signalled)."""
    try:
        return ProcessRecord.load(path)
    except StateFileError as exc:
        log.warning("pid file %s ignored: %s", path, exc)
        return None


def _running(record: ProcessRecord) -> psutil.Process | None:
    """The recorded process, if it still runs as itself: not gone, not a zombie, its pid not reused."""
    try:
        process = psutil.Process(record.pid)
        if record.started is not None and process.create_time() != record.started:
            return None
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except psutil.Error:  # gone (a zombie psutil cannot read counts as gone), or not ours to look at
        return None


def is_alive(record: ProcessRecord) -> bool:
    """Whether the recorded process still runs (a zombie or a reused pid does not count)."""
    return _running(record) is not None


def group_members(pgid: int) -> list[psutil.Process]:
    """The live processes of group ``pgid`` (zombies, waiting for a parent to reap them, do not count)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (OSError, psutil.Error):  # gone meanwhile
            continue
    return members


def _owns_group(record: ProcessRecord) -> bool:
    """Whether signalling ``record.pgid`` reaches only processes the app started, and some still run."""
    if record.pgid is None or record.pgid != record.pid:
        return False
    try:
        if record.started is not None and psutil.Process(record.pid).create_time() != record.started:
            return False  # the pid now belongs to an unrelated process
    except psutil.Error:
        # The leader is gone. While any member of its group lives the kernel does not hand its pid to another
        # process, so a live group under that id holds the leader's orphans.
        pass
    return bool(group_members(record.pgid))


def running_from_pid_file(path: Path) -> ProcessRecord | None:
    """The process recorded in ``path`` if it (or its group) still runs; a stale pid file is removed."""
    record = read_pid_file(path)
    if record is None:
        return None
    if is_alive(record) or _owns_group(record):
        return record
    path.unlink(missing_ok=True)
    return None


def _signal(record: ProcessRecord, sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group and record.pgid is not None:
            os.killpg(record.pgid, sig)
        else:
            os.kill(record.pid, sig)


def _gone(record: ProcessRecord, group: bool) -> bool:
    if group and record.pgid is not None:
        return not group_members(record.pgid)
    return not is_alive(record)


def stop_process(record: ProcessRecord, timeout_s: float = 10.0) -> bool:
    """SIGTERM the process (its whole group when it leads one), SIGKILL after ``timeout_s``.

    Returns True when something was running and was stopped.
    """
    group = _owns_group(record)
    if not group and not is_alive(record):
        return False
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        _signal(record, sig, group)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if _gone(record, group):
                return True
            time.sleep(0.05)
        if sig == signal.SIGTERM:
            log.warning("process %s (pid %s) ignored SIGTERM for %.0fs; killing it", record.name, record.pid, wait_s)
    return _gone(record, group)


def stop_pid_file(path: Path, timeout_s: float = 10.0) -> bool:
    """Stop the process recorded in ``path`` and remove the file; True when one was running."""
    record = running_from_pid_file(path)
    stopped = stop_process(record, timeout_s) if record else False
    path.unlink(missing_ok=True)
    return stopped


def stop_recorded_processes(workdir: Path, timeout_s: float = 10.0) -> list[str]:
    """Stop every process recorded under ``<workdir>/pids/*.pid``; the names of those that ran."""
    directory = pids_dir(workdir)
    paths = sorted(directory.glob("*.pid")) if directory.is_dir() else []
    return [path.stem for path in paths if stop_pid_file(path, timeout_s)]


def start_detached(
    argv: Sequence[str],
    *,
    log_path: Path,
    pid_path: Path,
    name: str = "",
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (outliving the caller), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            close_fds=True,
        )
    write_pid_file(pid_path, record_for(proc.pid, name or pid_path.stem))
    # A long-running parent (the local host starts job and endpoint processes) must reap its children, or
    # each finished job stays a zombie until the host exits.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (the OS's choice)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports nothing listens on right now (the OS's choice; held together while chosen)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_for_port(
    port: int,
    *,
    host: str = LOOPBACK,
    timeout_s: float = 30.0,
    process: subprocess.Popen[bytes] | ProcessRecord | None = None,
    name: str = "process",
    log_path: Path | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> None:
    """Wait until ``host:port`` answers; fail early, with the log's tail, if ``process`` exits meanwhile."""
    started = time.monotonic()
    while not port_in_use(port, host):
        elapsed = time.monotonic() - started
        exited = (
            process.poll() is not None
            if isinstance(process, subprocess.Popen)
            else process is not None and not is_alive(process)
        )
        if exited or elapsed > timeout_s:
            why = "exited while starting" if exited else f"did not answer on port {port} within {timeout_s:.0f}s"
            tail = log_tail(log_path) if log_path else ""
            where = f" (log {log_path})" if log_path else ""
            raise StartTimeoutError(f"{name} {why}{where}" + (f":\n{tail}" if tail else ""))
        if on_wait:
            on_wait(elapsed)
        time.sleep(0.2)
