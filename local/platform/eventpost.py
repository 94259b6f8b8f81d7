"""Post Azure ML-shaped Event Grid events to the app's webhook, as a workspace's subscription would.

Events are built with ``azure.eventgrid.EventGridEvent`` and ``SystemEventNames`` (no hand-rolled envelope)
and serialised to the Event Grid wire schema (``id, topic, subject, eventType, eventTime, data,
dataVersion, metadataVersion``). Data keys are camelCase, as in the SDK's test payloads. Delivery follows
Event Grid: a JSON array, header ``aeg-event-type: Notification``, 200-204 is success, 400/401/403/413 are not
retried, anything else is retried with backoff. The webhook key travels in ``x-functions-key`` and is never
logged; logged URLs have their query string removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from azure.eventgrid import EventGridEvent, SystemEventNames

log = logging.getLogger(__name__)

# The local workspace, spelled like an Azure ML workspace resource id so topic checks behave the same.
LOCAL_TOPIC = "/subscriptions/local/resourceGroups/local/providers/Microsoft.MachineLearningServices/workspaces/local"
PIPELINE_RUN_TYPE = "azureml.PipelineRun"
DATA_VERSION = "2"
# Event Grid stamps metadataVersion "1" on delivery; the SDK model treats it as read-only, so it is added
# to the wire form here, as the service would.
METADATA_VERSION = "1"
SUCCESS = range(200, 205)
NOT_RETRIED = {400, 401, 403, 413}

# Plain strings (the enum's str() would be its member name, not the event type).
RUN_COMPLETED = str(SystemEventNames.MachineLearningServicesRunCompletedEventName.value)
RUN_STATUS_CHANGED = str(SystemEventNames.MachineLearningServicesRunStatusChangedEventName.value)
MODEL_REGISTERED = str(SystemEventNames.MachineLearningServicesModelRegisteredEventName.value)


def run_event(
    event_type: str,
    *,
    job_name: str,
    experiment_id: str,
    experiment_name: str,
    tags: dict[str, str],
    properties: dict[str, str] | None = None,
    status: str | None = None,
    topic: str = LOCAL_TOPIC,
) -> EventGridEvent:
    """RunCompleted (no status) or RunStatusChanged (with ``status``) for a pipeline job."""
    data: dict[str, Any] = {
        "experimentId": experiment_id,
        "experimentName": experiment_name,
        "runId": job_name,
        "runType": PIPELINE_RUN_TYPE,
        "runTags": dict(tags),
        "runProperties": dict(properties or {}),
    }
    if status is not None:
        data["runStatus"] = status
    return EventGridEvent(
        subject=f"experiments/{experiment_id}/runs/{job_name}",
        event_type=event_type,
        data=data,
        data_version=DATA_VERSION,
        topic=topic,
    )


def model_registered_event(
    name: str,
    version: str,
    tags: dict[str, str],
    properties: dict[str, str] | None = None,
    *,
    topic: str = LOCAL_TOPIC,
) -> EventGridEvent:
    return EventGridEvent(
        subject=f"models/{name}:{version}",
        event_type=MODEL_REGISTERED,
        data={
            "modelName": name,
            "modelVersion": str(version),
            "modelTags": dict(tags),
            "modelProperties": dict(properties or {}),
        },
        data_version=DATA_VERSION,
        topic=topic,
    )


def to_wire(event: EventGridEvent) -> dict[str, Any]:
    """The Event Grid schema of one event, as delivered to a webhook."""
    wire: dict[str, Any] = dict(event.serialize())
    wire["id"] = str(wire["id"])
    wire.setdefault("topic", LOCAL_TOPIC)
    wire["metadataVersion"] = METADATA_VERSION
    return wire


def function_url(base_url: str, function_name: str) -> str:
    """``<base>?functionName=<name>``, keeping any query the base already has."""
    parts = urlsplit(base_url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=query + urlencode({"functionName": function_name})))


def _safe(url: str) -> str:
    """The URL without its query: a ``code=`` key must never reach a log line."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment=""))


def post_events(
    base_url: str,
    function_name: str,
    key: str,
    events: Sequence[EventGridEvent],
    *,
    tries: int = 5,
    first_delay_s: float = 2.0,
    timeout_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Deliver ``events`` to ``functionName``; True once the webhook accepted them.

    Five tries with delays 2, 4, 8, 16 s take about 30 s; a webhook that never answers makes this return
    False (the reconcile timer picks up what the event would have started).
    """
    import httpx

    if not base_url:
        log.info("no webhook configured; %d event(s) not posted", len(events))
        return False
    url = function_url(base_url, function_name)
    body = [to_wire(e) for e in events]
    headers = {"aeg-event-type": "Notification", "content-type": "application/json"}
    if key:
        headers["x-functions-key"] = key
    kinds = ", ".join(e.event_type.rsplit(".", 1)[-1] for e in events)
    delay = first_delay_s
    for attempt in range(1, tries + 1):
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=timeout_s)
        except httpx.HTTPError as exc:
            outcome = f"{type(exc).__name__}"
        else:
            if response.status_code in SUCCESS:
                log.info("posted %s to %s (function %s)", kinds, _safe(url), function_name)
                return True
            if response.status_code in NOT_RETRIED:
                log.warning("webhook %s refused %s with HTTP %d; not retried", _safe(url), kinds, response.status_code)
                return False
            outcome = f"HTTP {response.status_code}"
        if attempt < tries:
            log.info("posting %s to %s failed (%s); retry %d in %.0f s", kinds, _safe(url), outcome, attempt, delay)
            sleep(delay)
            delay *= 2
        else:
            log.warning("posting %s to %s failed %d times (%s); giving up", kinds, _safe(url), tries, outcome)
    return False


def post_in_background(
    base_url: str, function_name: str, key: str, events: Sequence[EventGridEvent], **kwargs: Any
) -> threading.Thread:
    """Post from a daemon thread: the caller (often a webhook handler of this host) must not wait on it."""
    thread = threading.Thread(
        target=post_events,
        args=(base_url, function_name, key, list(events)),
        kwargs=kwargs,
        name=f"eventpost-{function_name}",
        daemon=True,
    )
    thread.start()
    return thread
