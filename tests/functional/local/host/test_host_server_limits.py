"""The webhook server's limits, on a real socket: a client that never finishes its headers is disconnected,
a body that trickles past the deadline gets 408, and connections past the cap get 503 rather than a hang."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import azure.functions as func
import pytest
import uvicorn

from local.common.httplimits import bounded_config
from local.common.processes import LOOPBACK
from local.host.discovery import discover
from local.host.webhook import WEBHOOK_PATH, build_webhook_app

KEY = "k3y-for-limits"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(header_timeout_s: float) -> Iterator[int]:
    app = func.FunctionApp()

    @app.function_name("record")
    @app.event_grid_trigger(arg_name="event")
    def record(event: func.EventGridEvent) -> None:
        pass

    port = _free_port()
    webhook = build_webhook_app(discover(app).event_grid, KEY, body_timeout_s=0.5)
    config = bounded_config(
        webhook,
        host=LOOPBACK,
        port=port,
        over_cap="503",
        header_timeout_s=header_timeout_s,
        max_connections=4,
        log_config=None,
        lifespan="off",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.02)
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture
def server() -> Iterator[int]:
    with serving(header_timeout_s=0.5) as port:
        yield port


def _read_until_closed(sock: socket.socket, wait_s: float = 10.0) -> bytes:
    sock.settimeout(wait_s)
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open for {wait_s} s; got {data!r}") from None
        if not chunk:
            return data
        data += chunk


def test_a_connection_that_never_sends_its_headers_is_closed(server: int) -> None:
    with socket.create_connection((LOOPBACK, server)) as sock:
        sock.sendall(b"POST " + WEBHOOK_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        assert _read_until_closed(sock) == b""


def test_a_body_that_trickles_past_the_deadline_gets_408(server: int) -> None:
    head = (
        f"POST {WEBHOOK_PATH}?functionName=record&code={KEY} HTTP/1.1\r\nHost: x\r\n"
        "aeg-event-type: Notification\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n["
    )
    with socket.create_connection((LOOPBACK, server)) as sock:
        sock.sendall(head.encode())
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_connections_past_the_cap_get_503_not_a_hang() -> None:
    with serving(header_timeout_s=60) as port:
        _cap_is_enforced(port)


def _cap_is_enforced(port: int) -> None:
    idle = [socket.create_connection((LOOPBACK, port)) for _ in range(4)]
    try:
        with socket.create_connection((LOOPBACK, port)) as sock:
            sock.sendall(b"GET /admin/host/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = _read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    finally:
        for s in idle:
            s.close()
