"""Helpers for the processes the local life cycle starts: detached starts, pid files, ports, group stops.

A detached process leads its own process group (``start_new_session``), so stopping it also stops what it
started. A pid file records the pid, its group and the kernel's start time of the process, so a stale file
whose pid was reused by an unrelated process is recognised and never signalled. Pid files holding just a
number are read too (without that protection).

Other parts of the app (local jobs, endpoints) record their processes as ``<workdir>/pids/<name>.pid``;
``autopilot down`` stops all of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from local.common.exceptions import StartTimeoutError

log = logging.getLogger(__name__)

PIDS_DIRNAME = "pids"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ProcessRecord:
    """A process the app started: ``pgid`` is set when it leads its own group; ``start_ticks`` from /proc."""

    pid: int
    pgid: int | None = None
    start_ticks: int | None = None
    name: str = ""


def pids_dir(workdir: Path) -> Path:
    """Where job and endpoint processes record themselves (``<workdir>/pids/*.pid``)."""
    return workdir / PIDS_DIRNAME


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start ticks) of a process from /proc, or None where /proc is missing or the pid is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields after the last ')' are fixed.
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], int(fields[19])


def _reap(pid: int) -> None:
    # A child of this process stays a zombie (and "alive" to kill(0)) until it is waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def record_for(pid: int, name: str = "", own_group: bool = True) -> ProcessRecord:
    """A record of a running process (its start time read now)."""
    stat = _proc_stat(pid)
    return ProcessRecord(pid, pid if own_group else None, stat[1] if stat else None, name)


def write_pid_file(path: Path, record: ProcessRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps({"pid": record.pid, "pgid": record.pgid, "start_ticks": record.start_ticks, "name": record.name})
    )
    tmp.replace(path)


def read_pid_file(path: Path) -> ProcessRecord | None:
    """The record in ``path``; None when the file is missing or unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        if text.isdigit():
            return ProcessRecord(int(text), name=path.stem)
        raw = json.loads(text)
        pgid = raw.get("pgid")
        ticks = raw.get("start_ticks")
        return ProcessRecord(
            int(raw["pid"]),
            int(pgid) if pgid is not None else None,
            int(ticks) if ticks is not None else None,
            str(raw.get("name") or path.stem),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("pid file %s is not readable; ignored", path)
        return None


def is_alive(record: ProcessRecord) -> bool:
    """Whether the recorded process still runs (a zombie or a reused pid does not count)."""
    _reap(record.pid)
    stat = _proc_stat(record.pid)
    if stat is not None:
        state, ticks = stat
        return state != "Z" and (record.start_ticks is None or ticks == record.start_ticks)
    if Path("/proc/self/stat").exists():
        return False
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs (zombies, waiting for a parent to reap them, do not)."""
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owns_group(record: ProcessRecord) -> bool:
    """Whether signalling ``record.pgid`` reaches only processes the app started."""
    if record.pgid is None or record.pgid != record.pid:
        return False
    _reap(record.pid)
    stat = _proc_stat(record.pid)
    if stat is None:
        if not Path("/proc/self/stat").exists():  # no /proc to check: trust kill(0)
            return is_alive(record) or _group_alive(record.pgid)
        # The leader is gone. While any member of its group lives the kernel does not hand its pid to
        # another process, so a live group under that id holds the leader's orphans.
        return _group_alive(record.pgid)
    state, ticks = stat
    if record.start_ticks is not None and ticks != record.start_ticks:
        return False  # the pid now belongs to an unrelated process
    # A zombie leader (its parent has not reaped it yet) may still have live children in its group.
    return state != "Z" or _group_alive(record.pgid)


def running_from_pid_file(path: Path) -> ProcessRecord | None:
    """The process recorded in ``path`` if it still runs; a stale pid file is removed."""
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
        _reap(record.pid)
        return not _group_alive(record.pgid)
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


# Extra stop steps for ``autopilot down`` (e.g. a platform that records processes elsewhere). Each gets the
# workdir and returns the names of what it stopped.
StopHook = Callable[[Path], Sequence[str]]
STOP_HOOKS: list[StopHook] = []


def stop_recorded_processes(workdir: Path, timeout_s: float = 10.0) -> list[str]:
    """Stop every process recorded under ``<workdir>/pids/*.pid`` and run the stop hooks."""
    stopped: list[str] = []
    directory = pids_dir(workdir)
    for path in sorted(directory.glob("*.pid")) if directory.is_dir() else []:
        if stop_pid_file(path, timeout_s):
            stopped.append(path.stem)
    for hook in STOP_HOOKS:
        try:
            stopped.extend(hook(workdir))
        except Exception:
            log.exception("stop hook %s failed", getattr(hook, "__name__", hook))
    return stopped


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
