"""The Event Grid webhook of the Functions runtime: ``POST /runtime/webhooks/EventGrid?functionName=<name>``.

Every call needs the key (``code`` query parameter or ``x-functions-key`` header). A bad request gets a 400
with the reason, a missing or wrong key a 401; a function that raises gets a 500 so the sender retries,
as Event Grid does. Functions run in worker threads: they may block for seconds.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import azure.functions as func
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.common.exceptions import HostConfigError
from local.common.httplimits import BODY_TIMEOUT_S, BodyTooLarge, BodyTooSlow, read_body
from local.host.discovery import FunctionSpec, invoke
from shared.events import EventError, parse_event
from shared.jsonlimits import json_depth_ok

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/runtime/webhooks/EventGrid"
STATUS_PATH = "/admin/host/status"
# Event Grid delivers at most 1 MB per request; anything larger is not from it.
MAX_BODY_BYTES = 1024 * 1024
# The Event Grid schema's required fields; topic, data and dataVersion may be left out by publishers.
REQUIRED_FIELDS = ("id", "eventType", "subject", "eventTime")
# Event Grid's schema nests a few levels; past this a body is hostile, and json.loads would recurse.
MAX_JSON_DEPTH = 64


def _reason(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def parse_event_time(value: Any) -> datetime:
    """An ISO 8601 time as Event Grid writes it (``Z`` suffix, up to 7 fractional digits)."""
    if not isinstance(value, str):
        raise ValueError("eventTime must be a string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python reads at most 6 fractional digits; .NET writes 7.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_event(raw: Mapping[str, Any]) -> func.EventGridEvent:
    """One Event Grid schema event as the runtime's ``EventGridEvent``; ValueError names a bad field."""
    missing = [f for f in REQUIRED_FIELDS if raw.get(f) is None]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    for name in ("id", "eventType", "subject"):
        if not isinstance(raw[name], str) or not raw[name]:
            raise ValueError(f"{name} must be a non-empty string")
    try:
        event_time = parse_event_time(raw["eventTime"])
    except ValueError:
        raise ValueError("eventTime must be an ISO 8601 time") from None
    topic = raw.get("topic")
    version = raw.get("dataVersion")
    return func.EventGridEvent(
        id=raw["id"],
        # Any JSON value: the runtime passes the data through as it came.
        data=cast(Any, raw.get("data")),
        topic=topic if isinstance(topic, str) else "",
        subject=raw["subject"],
        event_type=raw["eventType"],
        event_time=event_time,
        data_version=version if isinstance(version, str) else "",
    )


def check_app_event(raw: Mapping[str, Any]) -> None:
    """EventError for an event the app's parser refuses (e.g. a run-id tag with path characters, a topic that
    is not text). The raw event is parsed, not the runtime object ``to_event`` builds from it: that object has
    already turned a topic that is not text into "".

    The function would drop it with a log line; answering 400 here says so to the sender, and Event Grid does
    not retry a 4xx, where a 500 from a handler tripping over it would be retried for 24 hours.
    """
    parse_event(dict(raw))


async def _read_events(request: Request, body_timeout_s: float) -> list[dict[str, Any]] | Response:
    """The body's events (an array, or one event object), or the answer refusing the body."""
    try:
        body = await read_body(request, max_bytes=MAX_BODY_BYTES, timeout_s=body_timeout_s)
    except BodyTooLarge:
        return _reason(413, f"body is larger than {MAX_BODY_BYTES} bytes")
    except BodyTooSlow:
        return _reason(408, f"the body did not arrive within {body_timeout_s:g} s")
    try:
        text = body.decode("utf-8")
        if not json_depth_ok(text, MAX_JSON_DEPTH):
            return _reason(400, f"body nests JSON deeper than {MAX_JSON_DEPTH} levels")
        payload = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return _reason(400, "body is not valid JSON")
    items = [payload] if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        return _reason(400, "body must be a JSON array of events (or one event object)")
    return items


def build_webhook_app(
    functions: Mapping[str, FunctionSpec], key: str, *, body_timeout_s: float = BODY_TIMEOUT_S
) -> Starlette:
    """The webhook for the app's Event Grid functions, guarded by ``key`` (which must not be empty)."""
    if not key:
        raise HostConfigError(
            "AUTOPILOT_WEBHOOK_KEY is empty: the local host will not serve an unauthenticated webhook; "
            "set it (autopilot up generates one into <workdir>/webhook.key)"
        )
    expected = key.encode("utf-8")

    def authorised(request: Request) -> bool:
        given = request.query_params.get("code") or request.headers.get("x-functions-key") or ""
        return hmac.compare_digest(given.encode("utf-8"), expected)

    async def event_grid(request: Request) -> Response:
        if not authorised(request):
            log.warning("webhook: rejected a call without a valid key")
            return _reason(401, "missing or wrong key: pass the code query parameter or x-functions-key header")
        name = request.query_params.get("functionName", "")
        spec = functions.get(name)
        if spec is None:
            known = ", ".join(sorted(functions)) or "none"
            return _reason(400, f"functionName {name!r} is not an Event Grid function (known: {known})")
        kind = request.headers.get("aeg-event-type", "")
        if kind not in ("Notification", "SubscriptionValidation", "SubscriptionDeletion"):
            return _reason(400, "header aeg-event-type must be Notification or SubscriptionValidation")
        items = await _read_events(request, body_timeout_s)
        if isinstance(items, Response):
            return items
        if kind == "SubscriptionDeletion":
            return Response(status_code=202)
        if kind == "SubscriptionValidation":
            data = items[0].get("data")
            code = data.get("validationCode") if isinstance(data, dict) else None
            if not isinstance(code, str) or not code:
                return _reason(400, "SubscriptionValidation needs data.validationCode")
            log.info("webhook: answered the subscription validation for %s", name)
            return JSONResponse({"validationResponse": code})
        events = []
        for index, raw in enumerate(items):
            try:
                events.append(to_event(raw))  # the envelope's shape first: its messages name the field
                check_app_event(raw)
            except (ValueError, EventError) as exc:
                return _reason(400, f"event [{index}]: {exc}")
        failed = []
        for event in events:
            outcome = await run_in_threadpool(invoke, spec, event, f"event {event.id}")
            if not outcome.succeeded:
                failed.append(event.id)
        if failed:
            return _reason(500, f"function {name} failed for event(s) {', '.join(failed)}; retry the delivery")
        return Response(status_code=200)

    async def host_status(_: Request) -> Response:
        return JSONResponse({"state": "Running"})

    async def not_found(request: Request, exc: Exception) -> Response:
        return _reason(404, "not found")

    async def server_error(request: Request, exc: Exception) -> Response:
        # Last line of defence: the host answers rather than dropping the connection.
        log.error("webhook: unexpected %s", type(exc).__name__)
        return _reason(500, "internal error in the local host")

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, event_grid, methods=["POST"]),
            Route(STATUS_PATH, host_status, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 500: server_error},
    )
