"""Injected answers for the replay (``replay.py``): Azure's faults, answered to the real SDK in the shape the
services document, queued before or instead of a recorded answer of the same method and path.

- Azure Resource Manager throttles with 429 and a ``Retry-After`` header (seconds), and answers 503 when a
  service is unavailable; its error body is ``{"error": {"code", "message"}}`` (Azure Resource Manager,
  "Understand how Azure Resource Manager throttles requests" and the REST API error format). The throttling
  code ARM sends for a subscription is ``SubscriptionRequestsThrottled``.
- A long-running operation reports ``status`` ``InProgress`` / ``Updating`` until it ends ``Succeeded``,
  ``Failed`` (with its ``error``) or ``Canceled``: a recorded operation answer with its status changed.
- No recording holds a key listing or a scoring answer: ``listed_keys`` is the REST API's ``EndpointAuthKeys``
  shape with placeholder keys, and a scoring answer is what the test gives (a gateway's text page, a JSON
  error, or the model's answer).
"""

from __future__ import annotations

import copy
from typing import Any

ARM = "https://management.azure.com"


def injected(
    method: str,
    path: str,
    status: int,
    *,
    code: str,
    message: str,
    retry_after: float | None = None,
    host: str = ARM,
) -> dict[str, Any]:
    """One injected answer: ``status`` with the ARM error body (and ``Retry-After`` when given)."""
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    return {
        "_label": f"injected-{status}",
        "RequestUri": f"{host}{path}?api-version=injected",
        "RequestMethod": method,
        "StatusCode": status,
        "ResponseHeaders": headers,
        "ResponseBody": {"error": {"code": code, "message": message}},
    }


def throttled(method: str, path: str, retry_after: float) -> dict[str, Any]:
    return injected(
        method,
        path,
        429,
        code="SubscriptionRequestsThrottled",
        message=f"Number of requests for subscription exceeded the limit. Try again after {retry_after:g} seconds.",
        retry_after=retry_after,
    )


def unavailable(method: str, path: str, host: str = ARM) -> dict[str, Any]:
    return injected(method, path, 503, code="ServiceUnavailable", message="The service is unavailable.", host=host)


def operation(entry: dict[str, Any], status: str, error: dict[str, str] | None = None) -> dict[str, Any]:
    """A recorded operation answer whose operation is now ``status`` (``Failed`` with ``error``)."""
    answer = copy.deepcopy(entry)
    answer["_label"] = f"operation-{status.lower()}"
    answer["ResponseBody"]["status"] = status
    if error is not None:
        answer["ResponseBody"]["error"] = error
    return answer


def as_read(entry: dict[str, Any], provisioning_state: str) -> dict[str, Any]:
    """A recorded resource answer given to a read, with its ``provisioningState`` changed."""
    answer = copy.deepcopy(entry)
    answer["RequestMethod"] = "GET"
    answer["StatusCode"] = 200
    answer["ResponseBody"]["properties"]["provisioningState"] = provisioning_state
    return answer


def listed_keys(endpoint_path: str) -> dict[str, Any]:
    return {
        "_label": "keys",
        "RequestUri": f"{ARM}{endpoint_path}/listKeys?api-version=2022-02-01-preview",
        "RequestMethod": "POST",
        "StatusCode": 200,
        "ResponseHeaders": {"Content-Type": "application/json; charset=utf-8"},
        "ResponseBody": {"primaryKey": "placeholder-primary", "secondaryKey": "placeholder-secondary"},
    }


def scored(scoring_uri: str, status: int, body: Any, content_type: str = "application/json") -> dict[str, Any]:
    """The scoring route's answer; a ``str`` body is sent as text (``ResponseBody`` is JSON-encoded otherwise)."""
    return {
        "_label": f"scored-{status}",
        "RequestUri": scoring_uri,
        "RequestMethod": "POST",
        "StatusCode": status,
        "ResponseHeaders": {"Content-Type": content_type},
        "ResponseBody": body,
        "_text": isinstance(body, str),
    }
