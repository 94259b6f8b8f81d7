"""Replay of the azure-ai-ml SDK's own test recordings through the real SDK.

``ReplayTransport`` is an azure-core ``HttpTransport``: the SDK builds and sends its real requests, and each is
answered with the recorded response of the same method and path (names rewritten from the recording's to the
app's), so the adapter runs through the SDK's serialisation, error mapping and long-running-operation code
against bodies a real workspace returned. A request the recording does not hold fails the test.

Long-running operations poll on the SDK's own poller threads; the transport is shared with them (a lock guards
it) and its ``sleep`` returns at once, so a replayed poll never waits the recorded 5-30 s. A test that starts
an operation the adapter does not wait for (``set_traffic``) waits for the transport to have served what was
queued (``wait_served``) instead of sleeping.

Recordings are kept in tests/fixtures/azureml/recordings/ (SOURCES.md there), one entry per recorded exchange,
each with a ``_label`` naming what it is; tests queue the entries each step of the adapter needs, by label,
in the order the SDK sends them.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import threading
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
# The resources whose tags are the app's when the app made them (the workspace's own tags are not).
APP_RESOURCE_TYPES = (
    "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
    "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
    "Microsoft.MachineLearningServices/workspaces/models/versions",
    "Microsoft.MachineLearningServices/workspaces/jobs",
)


class UnrecordedRequest(AssertionError):
    """The SDK sent a request the recording has no answer for."""


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any

    @property
    def api_version(self) -> str | None:
        versions = self.query.get("api-version")
        return versions[0] if versions else None

    def json(self) -> Any:
        return json.loads(self.body) if isinstance(self.body, (str, bytes)) else self.body


@dataclass
class ReplayTransport(HttpTransport):
    """Answers from recorded entries, each used once, in order per (method, path)."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)  # also what poller threads asked and got no answer for
    slept: list[float] = field(default_factory=list)  # the delays the SDK's pollers asked for, not slept
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def __enter__(self) -> ReplayTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def sleep(self, duration: float) -> None:
        # azure-core's pollers and retry policy sleep through the transport: a replay answers at once.
        with self._lock:
            self.slept.append(duration)

    def queue(self, *entries: dict[str, Any]) -> None:
        with self._lock:
            self.entries.extend(entries)

    def wait_served(self, timeout: float = 30.0) -> bool:
        """Until every queued entry was used (an operation's poller thread may still be polling)."""
        with self._lock:
            return self._lock.wait_for(lambda: not self.entries or bool(self.unanswered), timeout)

    def send(self, request: Any, **kwargs: Any) -> Any:
        url = urlsplit(request.url)
        path = url.path.rstrip("/").lower()
        body = request.data if hasattr(request, "data") else None
        if body is None and getattr(request, "content", None) is not None:
            body = request.content
        with self._lock:
            self.sent.append(Sent(request.method, url.path, parse_qs(url.query), body))
            for index, entry in enumerate(self.entries):
                recorded = urlsplit(entry["RequestUri"]).path.rstrip("/").lower()
                if entry["RequestMethod"] == request.method and recorded == path:
                    del self.entries[index]
                    self._lock.notify_all()
                    return _response(request, entry)
            self.unanswered.append(f"{request.method} {url.path}")
            self._lock.notify_all()
        raise UnrecordedRequest(f"no recorded answer for {request.method} {url.path}")

    def requests(self, method: str | None = None, contains: str = "") -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if (method is None or s.method == method) and contains in s.path]


def _response(request: Any, entry: dict[str, Any]) -> Any:
    raw = requests.Response()
    raw.status_code = int(entry["StatusCode"])
    raw.reason = "recorded"
    raw.headers = CaseInsensitiveDict(entry.get("ResponseHeaders") or {})
    body = entry.get("ResponseBody")
    # Read as the socket would be; an injected text answer (``"_text": true``) is sent as it is.
    payload = body.encode() if entry.get("_text") else json.dumps(body).encode()
    raw.raw = io.BytesIO(b"" if body is None else payload)
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


def workspace_renames(subscription: str, group: str, workspace: str) -> dict[str, str]:
    """The recordings' sanitized workspace identity -> the app's (``load`` also catches ``/workspaces/00000``
    at the end of a path, the workspace itself)."""
    return {
        f"/subscriptions/{RECORDED_SUBSCRIPTION}/": f"/subscriptions/{subscription}/",
        f"/resourceGroups/{RECORDED_GROUP}/": f"/resourceGroups/{group}/",
        f"/workspaces/{RECORDED_WORKSPACE}/": f"/workspaces/{workspace}/",
        f"/workspaces/{RECORDED_WORKSPACE}?": f"/workspaces/{workspace}?",
        f'/workspaces/{RECORDED_WORKSPACE}"': f'/workspaces/{workspace}"',
    }


def load(name: str, renames: dict[str, str], *, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The recording's entries with its names rewritten (``renames``: recorded -> app), and the tags of the
    app's resources (endpoints, deployments, models, jobs) replaced by ``tags`` when given: the service echoes
    the tags a create sent, so this makes the recorded resource one the app made."""
    document = json.loads((RECORDINGS / name).read_text())
    text = json.dumps(document["Entries"])
    for recorded, app in sorted(renames.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(recorded, app)
    entries: list[dict[str, Any]] = json.loads(text)
    if tags is not None:
        for entry in entries:
            _set_tags(entry.get("ResponseBody"), tags)
    return entries


def _set_tags(body: Any, tags: dict[str, str]) -> None:
    for resource in body.get("value", []) if isinstance(body, dict) and "value" in body else [body]:
        if not isinstance(resource, dict) or resource.get("type") not in APP_RESOURCE_TYPES:
            continue
        if "tags" in resource:
            resource["tags"] = dict(tags)
        properties = resource.get("properties")
        if isinstance(properties, dict) and "tags" in properties:
            properties["tags"] = dict(tags)


def by_label(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Entries by their ``_label``; each call of ``take`` hands out a copy, so a step may reuse an answer the
    service gave more than once (the endpoint read before every step)."""
    labelled = {entry["_label"]: entry for entry in entries if "_label" in entry}
    if len(labelled) != sum(1 for entry in entries if "_label" in entry):
        raise ValueError("duplicate _label in a recording")
    return labelled


def take(labelled: dict[str, dict[str, Any]], *labels: str) -> list[dict[str, Any]]:
    return [copy.deepcopy(labelled[label]) for label in labels]


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


REPLAY_TENANT = "00000000-0000-0000-0000-000000000000"  # the tenant of the replay's tokens (the SDK reads it)


class ReplayCredential:
    """A credential for the SDK's bearer-token policy; the replayed service checks no token.

    The token is an unsigned JWT whose audience is the scope asked for: ``jobs.create_or_update`` of a pipeline
    job decodes the token it gets for ``https://ml.azure.com/.default`` and refuses one of another audience.
    """

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        audience = re.sub(r"/\.default$", "", scopes[0]) if scopes else ""
        claims = {"aud": audience, "tid": REPLAY_TENANT, "oid": "replayed"}
        token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
        return AccessToken(token, int(time.time()) + 3600)


def replay_client(
    transport: ReplayTransport, subscription: str, group: str, workspace: str, credential: Any = None
) -> Any:
    """A real workspace ``MLClient`` whose every HTTP call goes to ``transport``, built with the app's options
    (``retries.sdk_options``: how long a call waits on throttling), as ``AzureClients`` builds it."""
    from azure.ai.ml import MLClient

    from shared.platform.azureml.retries import sdk_options

    return MLClient(
        credential or ReplayCredential(),
        subscription_id=subscription,
        resource_group_name=group,
        workspace_name=workspace,
        transport=transport,
        **sdk_options(),
    )


def answer_for(entry: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """A recorded answer given to another request: the recordings hold no read of a missing endpoint,
    deployment or model version, so a test answers one with the service's recorded 404 of a missing model
    (the SDK maps every 404 to ``ResourceNotFoundError``; the body is the service's own)."""
    answer = copy.deepcopy(entry)
    answer["RequestUri"] = f"https://management.azure.com{path}?api-version=replayed"
    answer["RequestMethod"] = method
    return answer


def replay_platform(
    transport: ReplayTransport,
    settings: Any,
    *,
    credential: Any = None,
    registries: dict[str, Any] | None = None,
) -> Any:
    """``AzureMLPlatform`` on a real ``MLClient`` for the settings' workspace, talking to ``transport``."""
    from shared.platform.azureml.adapter import AzureMLPlatform
    from shared.platform.azureml.clients import AzureClients

    s = settings
    client = replay_client(
        transport, s.azureml_subscription_id, s.azureml_resource_group, s.azureml_workspace_name, credential
    )
    clients = AzureClients(s, credential=object(), workspace=client, registries=registries)  # type: ignore[arg-type]
    return AzureMLPlatform(s, clients=clients)


def workspace_path(subscription: str, group: str, workspace: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{group}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{workspace}"
    )


def listing(path: str, *entries: dict[str, Any], api_version: str) -> dict[str, Any]:
    """A list page of recorded resources: no recording lists online endpoints, so the page is the service's
    list envelope (``{"value": [...]}``, as its recorded deployment lists are) around recorded resource bodies."""
    return {
        "_label": "listed",
        "RequestUri": f"https://management.azure.com{path}?api-version={api_version}",
        "RequestMethod": "GET",
        "StatusCode": 200,
        "ResponseHeaders": {"Content-Type": "application/json; charset=utf-8"},
        "ResponseBody": {"value": [copy.deepcopy(entry["ResponseBody"]) for entry in entries]},
    }
