"""Notifications to an Event Grid custom topic, as CloudEvents 1.0 (``notify.event_grid_topic`` in a config).

The events, the filter (``notify.events``), the ids and the retries are the webhooks' (shared/notify.py): one
CloudEvent per event a run goes through, with

- ``id`` ``<run id>:<event>``, the same on every re-delivery, so a subscriber drops duplicates by
  ``source`` + ``id`` as the CloudEvents spec says it may;
- ``source`` ``/fine-tune-autopilot/<config container>``; ``subject`` the config blob; ``type``
  ``autopilot.run.<event>``; ``time`` when the run entered the state (its timeline), also stable;
- ``datacontenttype`` ``application/json`` and ``data`` the webhook body, which carries no key.

Auth: the topic's access key from ``AUTOPILOT_EVENT_GRID_TOPIC_KEY`` when set (sent as the ``aeg-sas-key``
header, never in the payload, never logged), else the Function App's managed identity (it needs the
"EventGrid Data Sender" role on the topic). The SDK's own retry policy is off so that the bounded backoff of
shared/notify.py is the only one and a function never waits long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.ledger.record import RunRecord
from shared.notify import AWAITING_APPROVAL, deliver, notification_body, safe_url, subscribed_event
from shared.states import RunState

log = logging.getLogger(__name__)

SPEC_VERSION = "1.0"
DEFAULT_SOURCE = "/fine-tune-autopilot"

# Publishes one structured CloudEvent (a dict as cloud_event() builds it) to a topic endpoint; returns an HTTP
# status, raises OSError when nothing answered.
Publish = Callable[[str, dict[str, Any]], int]


def cloud_event(record: RunRecord, event: str, source: str = DEFAULT_SOURCE) -> dict[str, Any]:
    """The CloudEvents 1.0 structured form of one notification: every attribute is stable per event."""
    state = RunState.REGISTERED.value if event == AWAITING_APPROVAL else record.state.value
    at = record.timeline.get(state) or record.updated_at.isoformat()
    return {
        "specversion": SPEC_VERSION,
        "id": f"{record.run_id}:{event}",
        "source": source,
        "type": f"autopilot.run.{event}",
        "subject": record.config_blob,
        "time": at,
        "datacontenttype": "application/json",
        "data": notification_body(record, event),
    }


@dataclass
class SdkPublisher:
    """``Publish`` with azure-eventgrid's ``EventGridPublisherClient``: one client per topic, built on first use.

    ``key`` (the topic's access key) wins; without it ``credential()`` gives the managed identity."""

    key: str = ""
    credential: Callable[[], Any] | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"SdkPublisher(key={'***' if self.key else ''!r})"

    def _client(self, endpoint: str) -> Any:
        if endpoint not in self._clients:
            from azure.eventgrid import EventGridPublisherClient

            if self.key:
                from azure.core.credentials import AzureKeyCredential

                credential: Any = AzureKeyCredential(self.key)
            elif self.credential is not None:
                credential = self.credential()
            else:
                raise OSError("no credential for the Event Grid topic")
            # retry_total=0: shared.notify.deliver does the retrying, bounded.
            self._clients[endpoint] = EventGridPublisherClient(endpoint, credential, retry_total=0)
        return self._clients[endpoint]

    def __call__(self, endpoint: str, event: dict[str, Any]) -> int:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
        from azure.core.messaging import CloudEvent

        try:
            self._client(endpoint).send(CloudEvent.from_dict(event))
        except ClientAuthenticationError as exc:
            return int(getattr(exc, "status_code", None) or 401)
        except HttpResponseError as exc:
            return int(exc.status_code or 0) or 500
        except ServiceRequestError as exc:  # nothing answered (connection refused, DNS, TLS)
            raise OSError(type(exc).__name__) from None
        return 200


@dataclass
class EventGridNotifier:
    """A ``RunStore`` observer: after each state change, publish the event to the run's Event Grid topic."""

    publish: Publish
    source: str = DEFAULT_SOURCE
    sleep: Callable[[float], None] = time.sleep

    def __call__(self, record: RunRecord) -> None:
        wanted = subscribed_event(record)
        if wanted is None:
            return
        notify, event = wanted
        topic = notify.get("event_grid_topic")
        if not topic:
            return
        envelope = cloud_event(record, event, self.source)
        deliver(
            lambda: self.publish(topic, envelope),
            run_id=record.run_id,
            event=event,
            target=f"Event Grid topic {safe_url(topic)}",
            sleep=self.sleep,
        )
