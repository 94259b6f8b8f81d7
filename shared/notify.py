"""Notifications to the people behind a run: a signed JSON POST to each webhook in the config's ``notify``
section when the run completes, fails, is rejected, waits for approval, is deployed, fails to deploy or is
deleted.

Each notification has a stable id (``<run id>:<event>``), so a receiver can drop the duplicates that
at-least-once delivery brings. The body is signed with HMAC-SHA256 under ``AUTOPILOT_NOTIFY_SIGNING_KEY``
(header ``X-Autopilot-Signature: sha256=<hex>``); the body never carries a key, and a webhook URL is never
logged with its query. Delivery is retried with backoff a few times, bounded so a function never waits long;
a receiver that stays down misses the notification (the status blob still says everything).

The same events go to an Event Grid custom topic as CloudEvents 1.0 when the config names one
(``notify.event_grid_topic``; see shared/notify_eventgrid.py), with the same id and the same retries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.config.model import NotifySection
from shared.ledger.record import RunRecord
from shared.states import RunState
from shared.status import awaiting

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Autopilot-Signature"
EVENT_HEADER = "X-Autopilot-Event"
ID_HEADER = "X-Autopilot-Delivery"

# The state a run enters -> the event people are told about.
EVENTS_BY_STATE = {
    RunState.COMPLETED: "completed",
    RunState.FAILED: "failed",
    RunState.CANCELED: "canceled",
    RunState.REJECTED: "rejected",
    RunState.DEPLOYED: "deployed",
    RunState.DEPLOY_FAILED: "deploy_failed",
    RunState.DELETED: "deleted",
}
AWAITING_APPROVAL = "awaiting_approval"
EVENTS = (*EVENTS_BY_STATE.values(), AWAITING_APPROVAL)
BACKOFF_S = (0.5, 1.0, 2.0)  # waits before the 2nd, 3rd and 4th try
TIMEOUT_S = 5.0


def event_for(record: RunRecord) -> str | None:
    """The event the run's current state is, or None if it is none people subscribe to."""
    if awaiting(record) == "approval":
        return AWAITING_APPROVAL
    return EVENTS_BY_STATE.get(record.state)


def notification_body(record: RunRecord, event: str) -> dict[str, Any]:
    return {
        "id": f"{record.run_id}:{event}",
        "type": f"autopilot.run.{event}",
        "run_id": record.run_id,
        "config": record.config_blob,
        "state": record.state.value,
        "at": record.updated_at.isoformat(),
        "model": {"name": record.model_name, "version": record.model_version} if record.model_version else None,
        "endpoint": (
            {"name": record.endpoint_name, "scoring_uri": record.scoring_uri} if record.endpoint_name else None
        ),
        "error": (
            {"code": record.last_error_code, "messages": [e.message for e in record.errors]} if record.errors else None
        ),
        "metrics": {k: v for k, v in record.metrics.items() if k in ("eval_loss_before", "eval_loss_after")},
    }


def sign(body: bytes, key: str) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def safe_url(url: str) -> str:
    """The URL as it may be logged: no query, no user info."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))


Post = Callable[[str, bytes, dict[str, str]], int]


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (https or loopback, checked by the config)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@dataclass
class WebhookNotifier:
    """A ``RunStore`` observer: after each state change, notify the run's webhooks if they asked for it."""

    signing_key: str
    post: Post = _post
    sleep: Callable[[float], None] = time.sleep

    def __call__(self, record: RunRecord) -> None:
        wanted = subscribed_event(record)
        if wanted is None:
            return
        notify, event = wanted
        urls = notify.webhooks
        if not urls:
            return
        body = json.dumps(notification_body(record, event), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", EVENT_HEADER: event, ID_HEADER: f"{record.run_id}:{event}"}
        if self.signing_key:
            headers[SIGNATURE_HEADER] = sign(body, self.signing_key)
        else:
            log.warning("run %s: AUTOPILOT_NOTIFY_SIGNING_KEY is not set; notification sent unsigned", record.run_id)
        for url in urls:
            deliver(
                lambda url=url: self.post(url, body, headers),  # type: ignore[misc]
                run_id=record.run_id,
                event=event,
                target=safe_url(url),
                sleep=self.sleep,
            )


def subscribed_event(record: RunRecord) -> tuple[NotifySection, str] | None:
    """The run's ``notify`` section and the event its current state is, if the section asks for that event."""
    notify = record.notify_section()
    event = event_for(record)
    if event is None or event not in (notify.events or EVENTS):
        return None
    return notify, event


def deliver(
    send: Callable[[], int], *, run_id: str, event: str, target: str, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """Call ``send`` (one delivery, answering an HTTP status; OSError for no answer) until it succeeds, with
    the backoff above; a 4xx other than 408/429 is a refusal and is not retried. ``target`` is for logs only
    and must already be safe to log."""
    for attempt, wait in enumerate((0.0, *BACKOFF_S), start=1):
        if wait:
            sleep(wait)
        try:
            status = send()
        except OSError as exc:
            status, reason = 0, type(exc).__name__
        else:
            reason = f"HTTP {status}"
        if 200 <= status < 300:
            log.info("run %s: %s notified to %s", run_id, event, target)
            return True
        if 400 <= status < 500 and status not in (408, 429):
            break  # the receiver refuses this notification: trying again cannot help
        log.info("run %s: %s to %s: %s (try %s)", run_id, event, target, reason, attempt)
    log.warning("run %s: %s could not be delivered to %s", run_id, event, target)
    return False
