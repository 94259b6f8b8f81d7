"""The identity-based storage connection asks the Functions host's managed identity endpoint for a token as the
user-assigned identity: a real HTTP exchange with a loopback stand-in, so not a unit test."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.settings import Settings

IDENTITY_ENV = {
    "AzureWebJobsStorage__accountName": "stautopilot",
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
}


@pytest.fixture
def identity_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, list[str]]]]:
    """A loopback stand-in for the Functions host's managed identity endpoint (``IDENTITY_ENDPOINT``)."""
    seen: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(parse_qs(urlsplit(self.path).query))
            body = json.dumps(
                {"access_token": "t", "expires_on": str(int(time.time()) + 3600), "token_type": "Bearer"}
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{server.server_port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "header-for-tests")
    yield seen
    server.shutdown()


def test_the_token_is_asked_for_the_user_assigned_identity(identity_endpoint: list[dict[str, list[str]]]) -> None:
    credential = Settings.from_env(IDENTITY_ENV).storage().token_credential()
    assert credential.get_token("https://storage.azure.com/.default").token == "t"
    assert identity_endpoint[0]["client_id"] == [IDENTITY_ENV["AzureWebJobsStorage__clientId"]]
