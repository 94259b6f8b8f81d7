"""The unit tier starts no process and opens no network socket: both raise here, so a test that needs one
belongs in ``tests/functional`` (real wiring in one process) or ``tests/integration`` (across processes).

Unix-domain sockets stay allowed: an asyncio event loop (Starlette's test client, anyio) makes a socketpair
to wake itself, which reaches no network and starts nothing.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


class UnitTierError(AssertionError):
    """A unit test reached for a process or a network socket."""


_REAL_SOCKET = socket.socket


class _NoNetworkSocket(_REAL_SOCKET):
    def __init__(self, family: Any = -1, type: Any = -1, proto: Any = -1, fileno: Any = None) -> None:
        if fileno is None and family in (-1, socket.AF_INET, socket.AF_INET6):
            raise UnitTierError("a unit test opened a network socket; move it to tests/functional or tests/integration")
        super().__init__(family, type, proto, fileno)


def _refuse_process(*_args: Any, **_kwargs: Any) -> Any:
    raise UnitTierError("a unit test started a process; move it to tests/functional or tests/integration")


class _NoPopen:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse_process()


# The standard library's own machine lookup runs ``uname -p`` once per process and caches it; libraries call it
# on import (mlflow does). Done here, before any test, so whether a unit test passes does not depend on whether an
# earlier test imported such a library first.
platform.platform()


@pytest.fixture(autouse=True)
def _no_process_no_socket() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "socket", _NoNetworkSocket)
        patch.setattr(subprocess, "Popen", _NoPopen)
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
            if hasattr(os, name):
                patch.setattr(os, name, _refuse_process)
        yield
