"""Notifications to an Event Grid custom topic, as CloudEvents 1.0 (``notify.event_grid_topic`` in a config).

The events, the filter (``notify.events``), the outbox and the delivery worker are the webhooks'
(shared/notify.py): the topic is one more destination of each owed event, sent in order with the same backoff
and recorded the same way. One CloudEvent per event a run goes through, with

- ``id`` ``<run id>:<event>``, the same on every re-delivery, so a subscriber drops duplicates by
  ``source`` + ``id`` as the CloudEvents spec says it may;
- ``source`` ``/fine-tune-autopilot/<config container>``; ``subject`` the config blob; ``type``
  ``autopilot.run.<event>``; ``time`` when the run entered the state (its timeline), also stable;
- ``datacontenttype`` ``application/json`` and ``data`` the webhook body, which carries no key.

Where: only to the topics the app's own settings allow (``AUTOPILOT_EVENT_GRID_TOPICS``). A config chooses
among them; one naming any other topic is rejected at submit, and nothing is ever published to one (a run
recorded before the rule changed included: its delivery fails with that reason), because whatever
authenticates the publish would go with it.

Auth: the topic's access key from ``AUTOPILOT_EVENT_GRID_TOPIC_KEY`` when set (sent as the ``aeg-sas-key``
header, to the one allowed topic it belongs to and nowhere else; never in the payload, never logged), else the
Function App's managed identity (it needs the "EventGrid Data Sender" role on each topic). The SDK's own retry
policy is off so that the worker's schedule is the only one, and it follows no redirect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from shared.exceptions import FieldIssue
from shared.ledger.outbox import Delivery, OwedEvent
from shared.ledger.record import RunRecord
from shared.notify import Outcome, answered, no_answer
from shared.notify_http import TIMEOUT_S

log = logging.getLogger(__name__)

SPEC_VERSION = "1.0"
DEFAULT_SOURCE = "/fine-tune-autopilot"

# One try, as the webhooks' (shared/notify_http.py): no SDK retry, no redirect, bounded waits.
REQUEST_OPTIONS: dict[str, Any] = {
    "retry_total": 0,
    "permit_redirects": False,
    "connection_timeout": TIMEOUT_S,
    "read_timeout": TIMEOUT_S,
}
# Publishes one structured CloudEvent (a dict as cloud_event() builds it) to a topic endpoint; returns an HTTP
# status, raises OSError when nothing answered.
Publish = Callable[[str, dict[str, Any]], int]


def topic_address(url: str) -> str:
    """A topic endpoint as it is compared with the allowed ones: scheme, host and port in lower case, the path
    without a trailing slash, no query or fragment (the client adds ``api-version`` itself)."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def allowed_topics(setting: str) -> frozenset[str]:
    """The addresses of ``AUTOPILOT_EVENT_GRID_TOPICS`` (comma-separated endpoints)."""
    return frozenset(topic_address(t) for t in setting.split(",") if t.strip())


def topic_issue(topic: str | None, allowed: frozenset[str]) -> FieldIssue | None:
    """Why a config may not name ``topic`` (None when it names none, or one the settings allow)."""
    if topic is None or topic_address(topic) in allowed:
        return None
    if not allowed:
        reason = "this app publishes to no Event Grid topic (its setting AUTOPILOT_EVENT_GRID_TOPICS is empty)"
    else:
        reason = "not one of the topics this app publishes to: " + ", ".join(sorted(allowed))
    return FieldIssue("notify.event_grid_topic", f"{reason}; ask whoever runs the app to add it")


def cloud_event(owed: OwedEvent, subject: str, source: str = DEFAULT_SOURCE) -> dict[str, Any]:
    """The CloudEvents 1.0 structured form of one owed event: every attribute is stable per event."""
    return {
        "specversion": SPEC_VERSION,
        "id": owed.id,
        "source": source,
        "type": f"autopilot.run.{owed.event}",
        "subject": subject,
        "time": owed.at.isoformat(),
        "datacontenttype": "application/json",
        "data": owed.body,
    }


@dataclass
class SdkPublisher:
    """``Publish`` with azure-eventgrid's ``EventGridPublisherClient``: one client per topic, built on first use.

    ``key`` (an access key) is used for ``key_topic`` only, the topic it belongs to; any other topic gets
    ``credential()``, the managed identity."""

    key: str = ""
    credential: Callable[[], Any] | None = None
    key_topic: str = ""
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"SdkPublisher(key={'***' if self.key else ''!r}, key_topic={self.key_topic!r})"

    def _client(self, endpoint: str) -> Any:
        if endpoint not in self._clients:
            from azure.eventgrid import EventGridPublisherClient

            if self.key and self.key_topic and topic_address(endpoint) == topic_address(self.key_topic):
                from azure.core.credentials import AzureKeyCredential

                credential: Any = AzureKeyCredential(self.key)
            elif self.credential is not None:
                credential = self.credential()
            else:
                raise OSError("no credential for the Event Grid topic")
            self._clients[endpoint] = EventGridPublisherClient(endpoint, credential)
        return self._clients[endpoint]

    def __call__(self, endpoint: str, event: dict[str, Any]) -> int:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
        from azure.core.messaging import CloudEvent

        try:
            # Per request, because azure-eventgrid 4.22 drops client options for a basic topic (its
            # EventGridPublisherClient builds the legacy client without them).
            self._client(endpoint).send(CloudEvent.from_dict(event), **REQUEST_OPTIONS)
        except ClientAuthenticationError as exc:
            return int(getattr(exc, "status_code", None) or 401)
        except HttpResponseError as exc:
            return int(exc.status_code or 0) or 500
        except ServiceRequestError as exc:  # nothing answered (connection refused, DNS, TLS)
            raise OSError(type(exc).__name__) from None
        return 200


@dataclass
class EventGridSender:
    """Sends one owed event to the run's Event Grid topic, if it is one of ``allowed`` (``allowed_topics`` of
    the settings); a topic that is not is a failed delivery with that reason, and gets nothing."""

    publish: Publish
    allowed: frozenset[str] = frozenset()
    source: str = DEFAULT_SOURCE

    def __call__(self, record: RunRecord, event: OwedEvent, delivery: Delivery) -> Outcome:
        topic = record.notify_section().event_grid_topic
        if not topic or event.body is None:
            return Outcome("the run names no Event Grid topic")
        if topic_issue(topic, self.allowed) is not None:
            log.warning(
                "run %s: %s not published: %s is not in AUTOPILOT_EVENT_GRID_TOPICS",
                record.run_id,
                event.event,
                delivery.target,
            )
            return Outcome("refused: the topic is not in AUTOPILOT_EVENT_GRID_TOPICS")
        try:
            status = self.publish(topic, cloud_event(event, record.config_blob, self.source))
        except OSError as exc:
            return no_answer(exc)
        return answered(status)
