"""Notifications to the people behind a run: a signed JSON POST to each webhook in the config's ``notify``
section, and a CloudEvent on its Event Grid topic (shared/notify_eventgrid.py), when the run completes, fails,
is canceled or rejected, waits for approval, is deployed, fails to deploy or is deleted.

Durable, in two halves (docs/notifications.md):

- **owed**: the ledger write that moves a run into such a state also records the event in the run's outbox
  (``owe``, called by shared/runs.py inside its ETag write loop), with its body as it is then and one delivery
  per destination. Nothing is sent there, so no receiver can hold up a state change;
- **sent**: the delivery worker (shared/services/delivery.py, its own timer) sends what is owed with the
  backoff of ``RETRY_AFTER``, in order per run and destination, recording every attempt; a delivery that
  fails its last try, or is refused, is given up with the reason on the run.

Each event has a stable id (``<run id>:<event>``), the ``webhook-id`` of every try, so a receiver drops the
duplicates that at-least-once delivery brings. Bodies are signed as Standard Webhooks
(shared/notify_signing.py); the body never carries a key, and a webhook URL is never logged or shown with its
query. Webhooks go to public addresses only and follow no redirect (shared/notify_http.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.config.model import NotifySection
from shared.exceptions import RefusedAddressError
from shared.ledger.outbox import EVENT_GRID, Delivery, OwedEvent, webhook_destination, webhook_index
from shared.ledger.record import RunRecord
from shared.notify_http import Resolve, resolve
from shared.notify_http import post as guarded_post
from shared.notify_signing import signed_headers
from shared.states import RunState
from shared.status import awaiting

log = logging.getLogger(__name__)

EVENT_HEADER = "X-Autopilot-Event"

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
# The wait after each failed try before the next: 12 tries over about 23.7 hours, then the delivery is given
# up. Receivers in the Stripe / GitHub mould expect retries over hours, not seconds.
RETRY_AFTER = tuple(timedelta(seconds=s) for s in (30, 120, 600, 1800, 3600, 7200, 14400, 14400, 14400, 14400, 14400))
MAX_TRIES = len(RETRY_AFTER) + 1
# What a notification body carries of a failure's messages (the status blob has them all): so an owed event
# has a bounded size and a run's outbox always fits the ledger.
MAX_BODY_MESSAGES = 10
MAX_BODY_MESSAGE_CHARS = 300
MAX_TARGET_CHARS = 120


def event_for(record: RunRecord) -> str | None:
    """The event the run's current state is, or None if it is none people subscribe to."""
    if awaiting(record) == "approval":
        return AWAITING_APPROVAL
    return EVENTS_BY_STATE.get(record.state)


def event_id(run_id: str, event: str) -> str:
    return f"{run_id}:{event}"


def notification_body(record: RunRecord, event: str) -> dict[str, Any]:
    messages = [e.message[:MAX_BODY_MESSAGE_CHARS] for e in record.errors[:MAX_BODY_MESSAGES]]
    return {
        "id": event_id(record.run_id, event),
        "type": f"autopilot.run.{event}",
        "run_id": record.run_id,
        "config": record.config_blob,
        "state": record.state.value,
        "at": record.updated_at.isoformat(),
        "model": {"name": record.model_name, "version": record.model_version} if record.model_version else None,
        "endpoint": (
            {"name": record.endpoint_name, "scoring_uri": record.scoring_uri} if record.endpoint_name else None
        ),
        "error": ({"code": record.last_error_code, "messages": messages} if record.errors else None),
        "metrics": {k: v for k, v in record.metrics.items() if k in ("eval_loss_before", "eval_loss_after")},
    }


def safe_url(url: str) -> str:
    """The URL as it may be logged or shown: no query, no user info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))[:MAX_TARGET_CHARS]


def shown_origin(url: str) -> str:
    """Where a notification goes, as status shows it: scheme, host and port only (a webhook's path and query
    can be its secret, as a Slack or Teams incoming-webhook URL's are)."""
    parts = urlsplit(safe_url(url))
    return f"{parts.scheme}://{parts.netloc}"


def subscribed_event(record: RunRecord) -> tuple[NotifySection, str] | None:
    """The run's ``notify`` section and the event its current state is, if the section asks for that event."""
    notify = record.notify_section()
    event = event_for(record)
    if event is None or event not in (notify.events or EVENTS):
        return None
    return notify, event


def owe(record: RunRecord) -> bool:
    """Record in ``record``'s outbox the event its new state is, if people asked for it and it is not there
    yet; True when it added one. Called inside the write that changes the state: it sends nothing."""
    wanted = subscribed_event(record)
    if wanted is None:
        return False
    notify, event = wanted
    owed_id = event_id(record.run_id, event)
    if record.outbox.has(owed_id):
        return False
    deliveries = [
        Delivery(webhook_destination(i), f"{shown_origin(url)} (webhook {i + 1})")
        for i, url in enumerate(notify.webhooks)
    ]
    if notify.event_grid_topic:
        deliveries.append(Delivery(EVENT_GRID, "Event Grid topic " + shown_origin(notify.event_grid_topic)))
    if not deliveries:
        return False
    state = RunState.REGISTERED.value if event == AWAITING_APPROVAL else record.state.value
    at = datetime.fromisoformat(record.timeline[state]) if state in record.timeline else record.updated_at
    owed = OwedEvent(owed_id, event, at, notification_body(record, event), tuple(deliveries))
    record.outbox = record.outbox.added(owed)
    return True


@dataclass(frozen=True)
class Outcome:
    """What one try came to: ``outcome`` for people (``HTTP 204``, ``ConnectionRefusedError``, a refusal's
    reason), the HTTP status if one came, and whether it was delivered, or may be tried again."""

    outcome: str
    status: int | None = None
    delivered: bool = False
    retry: bool = False


def answered(status: int) -> Outcome:
    """A receiver's answer: 2xx delivered; 408, 429, 5xx and 3xx (a redirect is not followed, and may be
    temporary) tried again; any other 4xx a refusal, not retried."""
    if 200 <= status < 300:
        return Outcome(f"HTTP {status}", status, delivered=True)
    if 300 <= status < 400:
        return Outcome(f"HTTP {status} (redirects are not followed)", status, retry=True)
    if status in (408, 429) or status >= 500 or status < 100:
        return Outcome(f"HTTP {status}", status, retry=True)
    return Outcome(f"HTTP {status} (refused by the receiver)", status)


def no_answer(exc: OSError) -> Outcome:
    """Nothing answered: the error's kind (a plain OSError carries it as its text), tried again."""
    kind = type(exc).__name__
    return Outcome((str(exc) or kind) if type(exc) is OSError else kind, retry=True)


Send = Callable[[RunRecord, OwedEvent, Delivery], Outcome]
Post = Callable[[str, bytes, dict[str, str]], int]


@dataclass
class WebhookSender:
    """Sends one owed event to one of the run's webhooks, signed as Standard Webhooks."""

    signing_key: str
    allow_private: bool = False
    post: Post | None = None  # tests' seam; default: shared.notify_http.post with the address rules
    clock: Callable[[], float] = time.time
    resolver: Resolve = resolve

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"WebhookSender(allow_private={self.allow_private})"

    def __call__(self, record: RunRecord, event: OwedEvent, delivery: Delivery) -> Outcome:
        index = webhook_index(delivery.to)
        webhooks = record.notify_section().webhooks
        if index is None or index >= len(webhooks) or event.body is None:
            return Outcome("the run no longer names this webhook")
        url = webhooks[index]
        body = json.dumps(event.body, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", EVENT_HEADER: event.event}
        if self.signing_key:
            headers.update(signed_headers(self.signing_key, event.id, int(self.clock()), body))
        else:
            log.warning("run %s: AUTOPILOT_NOTIFY_SIGNING_KEY is not set; notification sent unsigned", record.run_id)
            headers["webhook-id"] = event.id
        try:
            if self.post is not None:
                status = self.post(url, body, headers)
            else:
                status = guarded_post(url, body, headers, allow_private=self.allow_private, resolver=self.resolver)
        except RefusedAddressError as exc:
            return Outcome(f"refused: {exc}")
        except OSError as exc:
            return no_answer(exc)
        return answered(status)
