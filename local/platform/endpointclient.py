"""The platform's HTTP client of its endpoint servers: the health probe and ``invoke``, as Azure ML's
``online_endpoints.invoke`` (a named deployment, else the endpoint's traffic split)."""

from __future__ import annotations

from typing import Any

from local.platform.serving.deployments import DEPLOYMENT_HEADER
from local.platform.serving.state import EndpointState
from shared.exceptions import PlatformError, TransientPlatformError

PROBE_TIMEOUT_S = 2.0
# Beyond the longest generation a deployment allows: the connection and the body.
INVOKE_SLACK_S = 10.0
TRANSIENT_STATUSES = frozenset({408, 429, 503})


def probe(state: EndpointState) -> int | None:
    """The status ``/health`` answers with; None when the server does not answer at all."""
    import httpx

    try:
        return httpx.get(state.url("/health"), timeout=PROBE_TIMEOUT_S).status_code
    except httpx.HTTPError:
        return None


def invoke(state: EndpointState, key: str, deployment_name: str | None, payload: dict[str, Any]) -> Any:
    """POST ``payload`` to the endpoint's ``/score``; its JSON answer, or PlatformError with the HTTP status
    as code (TransientPlatformError for a status worth retrying, or no answer)."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    if deployment_name is not None:
        headers[DEPLOYMENT_HEADER] = deployment_name
    timeout = state.longest_request_timeout_ms / 1000 + INVOKE_SLACK_S
    try:
        response = httpx.post(state.url(), json=payload, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise TransientPlatformError(f"endpoint {state.name} did not answer: {type(exc).__name__}") from None
    if response.status_code >= 400:
        error = TransientPlatformError if response.status_code in TRANSIENT_STATUSES else PlatformError
        raise error(
            f"endpoint {state.name} answered HTTP {response.status_code}: {_error_message(response)}",
            code=str(response.status_code),
        )
    return response.json()


def _error_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return str(response.text)[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    return str(body)[:300]
