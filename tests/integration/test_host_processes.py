from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from local.common.exceptions import StartTimeoutError
from local.common.processes import (
    ProcessRecord,
    is_alive,
    pids_dir,
    port_in_use,
    read_pid_file,
    running_from_pid_file,
    start_detached,
    stop_pid_file,
    stop_recorded_processes,
    wait_for_port,
    write_pid_file,
)
from local.common.webhook_key import ensure_webhook_key, webhook_key_for

# A parent that starts a child in its own group and then waits: stopping the group must end both.
PARENT_WITH_CHILD = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def _wait_for_line(path: Path, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return text.splitlines()[0]
        time.sleep(0.05)
    raise AssertionError(f"{path} stayed empty")


def test_start_detached_records_the_process_and_stop_ends_its_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids" / "job.pid"
    log_file = tmp_path / "job.log"
    proc = start_detached([sys.executable, "-c", PARENT_WITH_CHILD], log_path=log_file, pid_path=pid_file)
    record = read_pid_file(pid_file)
    assert record is not None and record.pid == proc.pid and record.pgid == proc.pid
    assert record.started is not None
    child = ProcessRecord(pid=int(_wait_for_line(log_file)))
    assert is_alive(record) and is_alive(child)
    assert stop_recorded_processes(tmp_path) == ["job"]
    assert not is_alive(record)
    assert not is_alive(child)
    assert not pid_file.exists()


def test_a_stale_pid_file_is_removed_and_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    stale = tmp_path / "gone.pid"
    proc = start_detached([sys.executable, "-c", "pass"], log_path=tmp_path / "x.log", pid_path=stale)
    proc.wait()
    assert running_from_pid_file(stale) is None
    assert not stale.exists()
    # This test process, recorded with another start time, stands for a pid reused by someone else:
    # it must be neither reported running nor signalled (the test would die if it were).
    reused = tmp_path / "reused.pid"
    write_pid_file(reused, ProcessRecord(pid=os.getpid(), pgid=os.getpid(), started=1.0, name="reused"))
    assert running_from_pid_file(reused) is None
    assert not stop_pid_file(reused)


def test_a_pid_file_that_is_not_a_record_of_this_version_is_ignored(tmp_path: Path) -> None:
    for name, text in (("number", "12345\n"), ("junk", "{not json"), ("future", '{"schema_version": 2, "pid": 1}')):
        (tmp_path / f"{name}.pid").write_text(text)
        assert read_pid_file(tmp_path / f"{name}.pid") is None, name
    record = ProcessRecord(pid=12345, pgid=12345, started=1.5, name="job x")
    write_pid_file(tmp_path / "x.pid", record)
    assert read_pid_file(tmp_path / "x.pid") == record


def test_stop_recorded_processes_without_a_pids_dir_is_a_no_op(tmp_path: Path) -> None:
    assert not pids_dir(tmp_path).exists()
    assert stop_recorded_processes(tmp_path) == []


def test_port_checks_and_wait_for_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_in_use(port)
        wait_for_port(port, timeout_s=1)
    assert not port_in_use(port)
    with pytest.raises(StartTimeoutError, match=f"did not answer on port {port}"):
        wait_for_port(port, timeout_s=0.3, name="thing")


def test_wait_for_port_fails_early_with_the_log_tail_when_the_process_exits(tmp_path: Path) -> None:
    log_file = tmp_path / "crash.log"
    proc = start_detached(
        [sys.executable, "-c", "import sys; print('cannot bind'); sys.exit(3)"],
        log_path=log_file,
        pid_path=tmp_path / "crash.pid",
    )
    started = time.monotonic()
    with pytest.raises(StartTimeoutError, match="crasher exited while starting") as info:
        wait_for_port(1, timeout_s=30, process=proc, name="crasher", log_path=log_file)
    assert "cannot bind" in str(info.value)
    assert time.monotonic() - started < 10


def test_webhook_key_is_generated_once_with_private_mode(tmp_path: Path) -> None:
    key = ensure_webhook_key(tmp_path)
    assert len(key) >= 32
    path = tmp_path / "webhook.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_webhook_key(tmp_path) == key
    assert webhook_key_for("", tmp_path) == key
    assert ensure_webhook_key(tmp_path, "configured") == "configured"
    assert webhook_key_for("configured", tmp_path) == "configured"
