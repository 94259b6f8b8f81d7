"""Replay of the azure-ai-ml SDK's own test recordings through the real SDK.

``ReplayTransport`` is an azure-core ``HttpTransport``: the SDK builds and sends its real requests, and each is
answered with the recorded response of the same method and path (names rewritten from the recording's to the
app's), so the adapter runs through the SDK's serialisation, error mapping and long-running-operation code
against bodies a real workspace returned. A request the recording does not hold fails the test.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline._tools import is_rest
from azure.core.pipeline.transport import HttpTransport
from azure.core.pipeline.transport._requests_basic import RequestsTransportResponse
from requests.structures import CaseInsensitiveDict

RECORDINGS = Path(__file__).resolve().parents[3] / "fixtures" / "azureml" / "recordings"
# The recordings' sanitized identity of the workspace.
RECORDED_SUBSCRIPTION = "00000000-0000-0000-0000-000000000"
RECORDED_GROUP = "00000"
RECORDED_WORKSPACE = "00000"


class UnrecordedRequest(AssertionError):
    """The SDK sent a request the recording has no answer for."""


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class ReplayTransport(HttpTransport):  # type: ignore[misc]
    """Answers from recorded entries, each used once, in order per (method, path)."""

    entries: list[dict[str, Any]]
    sent: list[Sent] = field(default_factory=list)

    def __enter__(self) -> ReplayTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request: Any, **kwargs: Any) -> Any:
        url = urlsplit(request.url)
        path = url.path.rstrip("/").lower()
        body = request.data if hasattr(request, "data") else None
        self.sent.append(Sent(request.method, url.path, parse_qs(url.query), body))
        for index, entry in enumerate(self.entries):
            recorded = urlsplit(entry["RequestUri"]).path.rstrip("/").lower()
            if entry["RequestMethod"] == request.method and recorded == path:
                del self.entries[index]
                return _response(request, entry)
        raise UnrecordedRequest(f"no recorded answer for {request.method} {url.path}")


def _response(request: Any, entry: dict[str, Any]) -> Any:
    raw = requests.Response()
    raw.status_code = int(entry["StatusCode"])
    raw.reason = "recorded"
    raw.headers = CaseInsensitiveDict(entry.get("ResponseHeaders") or {})
    body = entry.get("ResponseBody")
    raw.raw = io.BytesIO(json.dumps(body).encode())  # read as the socket would be
    raw.url = request.url
    # As azure-core's RequestsTransport does: the newer generated clients send azure.core.rest requests and
    # read rest responses (``.json()``), the older ones the pipeline-transport kind.
    if is_rest(request):
        from azure.core.pipeline.transport._requests_basic import _handle_non_stream_rest_response
        from azure.core.rest._requests_basic import RestRequestsTransportResponse

        response = RestRequestsTransportResponse(request=request, internal_response=raw)
        _handle_non_stream_rest_response(response)
        return response
    return RequestsTransportResponse(request, raw)


def load(name: str, renames: dict[str, str], *, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The recording's entries with its names rewritten (``renames``: recorded -> app), and the endpoint's tags
    replaced by ``tags`` when given (to make the recorded endpoint one the app manages)."""
    document = json.loads((RECORDINGS / name).read_text())
    text = json.dumps(document["Entries"])
    for recorded, app in sorted(renames.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(recorded, app)
    entries: list[dict[str, Any]] = json.loads(text)
    if tags is not None:
        for entry in entries:
            body = entry.get("ResponseBody")
            if isinstance(body, dict) and "tags" in body:
                body["tags"] = dict(tags)
    return entries


class ReplayCredential:
    """A credential for the SDK's bearer-token policy; the replayed service checks no token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("replayed-token", int(time.time()) + 3600)


def replay_client(transport: ReplayTransport, subscription: str, group: str, workspace: str) -> Any:
    """A real workspace ``MLClient`` whose every HTTP call goes to ``transport``."""
    from azure.ai.ml import MLClient

    return MLClient(
        ReplayCredential(),  # type: ignore[arg-type]
        subscription_id=subscription,
        resource_group_name=group,
        workspace_name=workspace,
        transport=transport,
    )
