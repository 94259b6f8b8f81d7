"""The notifier's POST on a real socket: it connects to the address it checked (a name that re-resolves elsewhere
is never asked again), follows no redirect, and a receiver that trickles its answer is cut off at the budget.
The address rules themselves are unit tests (tests/unit/shared/test_notify_addresses.py)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.exceptions import RefusedAddressError
from shared.notify_http import post


class _Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.requests.append({"path": self.path, "host": self.headers["Host"], "body": body})
                self.send_response(307)
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_the_post_goes_to_the_checked_address_and_follows_no_redirect() -> None:
    recorder = _Recorder()
    try:
        resolved: list[str] = []

        def resolver(host: str, port: int) -> list[str]:
            resolved.append(host)
            return ["127.0.0.1"]

        # A name the system cannot resolve: the request arrives only because it went to the checked address.
        url = f"http://rebind.invalid:{recorder.port}/hook?token=t"
        status = post(url, b"{}", {"Content-Type": "application/json"}, allow_private=True, resolver=resolver)
        assert status == 307 and resolved == ["rebind.invalid"]  # resolved once, for the check
        (got,) = recorder.requests
        assert got["host"] == f"rebind.invalid:{recorder.port}" and got["path"] == "/hook?token=t"
        with pytest.raises(RefusedAddressError):
            post(url, b"{}", {}, allow_private=False, resolver=resolver)
        assert len(recorder.requests) == 1
    finally:
        recorder.server.shutdown()


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_tries_budget() -> None:
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.is_set():  # one header byte at a time, each well within a read timeout
            try:
                conn.sendall(b"X")
            except OSError:
                return
            time.sleep(0.05)
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        with pytest.raises(TimeoutError, match=r"no complete answer within 0\.5 s"):
            post(url, b"{}", {}, allow_private=True, timeout_s=0.5)
    finally:
        stop.set()
        listener.close()
