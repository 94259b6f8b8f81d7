"""The unit tier's own rule (tests/unit/conftest.py): a unit test that reaches for a process or a network socket
fails at once, naming where the test belongs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.unit.conftest import UnitTierError


def test_a_network_socket_is_refused() -> None:
    with pytest.raises(UnitTierError, match="tests/functional or tests/integration"):
        socket.socket()
    with pytest.raises(UnitTierError):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)


def test_a_process_is_refused() -> None:
    with pytest.raises(UnitTierError, match="started a process"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)
    with pytest.raises(UnitTierError):
        os.system("true")  # noqa: S605


def test_a_unix_socketpair_stays_allowed_for_event_loops() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"x")
        assert right.recv(1) == b"x"
