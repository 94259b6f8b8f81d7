"""A notification receiver on loopback for the notify tests: records each request and answers with the
statuses it is given (204 when none is left). Serves webhooks and, since the azure-eventgrid client speaks plain
HTTP when it authenticates with a topic key, an Event Grid topic stand-in too. It can go down (its port closed:
connections are refused) and come back on the same port, redirect, or hold a request until released."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records what it got and answers with the statuses it is given."""

    def __init__(self, path: str = "/hooks/autopilot?token=abc") -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.location: str | None = None  # sent with a 3xx answer
        self.hold: threading.Event | None = None  # set: each request waits for it before answering
        self.arrived = threading.Event()
        self._path = path
        self._port = 0
        self.server: ThreadingHTTPServer | None = None
        self.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                status = receiver.answers.pop(0) if receiver.answers else 204
                receiver.received.append(
                    {
                        "method": method,
                        "body": body,
                        "headers": dict(self.headers),
                        "path": self.path,
                        "answered": status,
                    }
                )
                self.send_response(status)
                if 300 <= status < 400 and receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                self._record("POST")

            def do_GET(self) -> None:
                self._record("GET")

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> None:
        """Listen (again, on the same port once it had one)."""
        self.server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler())
        self._port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self._port}{self._path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Go down: the port is closed, so a connection is refused."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def delivered(self) -> list[Any]:
        return [json.loads(r["body"]) for r in self.received if 200 <= r["answered"] < 300]
