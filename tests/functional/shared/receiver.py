"""A notification receiver on loopback for the notify tests: records each POST and answers with the statuses
it is given (204 when none is left). Serves webhooks and, since the azure-eventgrid client speaks plain HTTP
when it authenticates with a topic key, an Event Grid topic stand-in too."""

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
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.answers.pop(0) if receiver.answers else 204
                receiver.received.append(
                    {"body": body, "headers": dict(self.headers), "path": self.path, "answered": status}
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[Any]:
        return [json.loads(r["body"]) for r in self.received if 200 <= r["answered"] < 300]
