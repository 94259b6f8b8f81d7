"""The notifications a run owes: its outbox, a typed part of the run record (``RunRecord.outbox``).

A state change that people subscribed to adds one ``OwedEvent`` in the same ledger write that changes the
state (shared/runs.py), with one ``Delivery`` per destination (each webhook of the config, its Event Grid
topic). The delivery worker (shared/services/delivery.py) moves each delivery ``owed`` -> ``delivered`` or
``failed`` through ETag writes of the run, recording every attempt. Nothing here sends anything.

A delivery is sent by whoever holds its lease (``lease``, ``lease_until``): taking it is an ETag write, so two
workers never send one delivery at once, and a worker that died mid-send leaves a lease that runs out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from shared.ledger.limits import MAX_FIELD_JSON_CHARS, json_chars
from shared.ledger.parts import iso, stamp

DeliveryState = Literal["owed", "delivered", "failed"]
DELIVERY_STATES: tuple[DeliveryState, ...] = ("owed", "delivered", "failed")
EVENT_GRID = "event_grid"  # the destination name of the config's Event Grid topic; webhooks are "webhook:<i>"
# Attempts a delivery keeps (the latest; ``tries`` counts them all): enough to show a receiver's trouble.
MAX_ATTEMPTS_KEPT = 4
# What a sending attempt reads until its outcome is written (the worker died if it still reads so later).
SENDING = "sending"


def webhook_destination(index: int) -> str:
    return f"webhook:{index}"


def webhook_index(destination: str) -> int | None:
    kind, _, index = destination.partition(":")
    return int(index) if kind == "webhook" and index.isdigit() else None


@dataclass(frozen=True)
class Attempt:
    """One try of a delivery: when, what came of it (``HTTP 204``, ``ConnectionRefusedError``, ...), the HTTP
    status if one came, and when the next try is due (None: no other try)."""

    at: datetime
    outcome: str
    status: int | None = None
    next_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "outcome": self.outcome,
            **({"status": self.status} if self.status is not None else {}),
            **({"next_at": iso(self.next_at)} if self.next_at is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        status = data.get("status")
        return cls(
            datetime.fromisoformat(data["at"]),
            str(data.get("outcome") or ""),
            int(status) if status is not None else None,
            stamp(data.get("next_at")),
        )


@dataclass(frozen=True)
class Delivery:
    """One event to one destination: ``to`` (``webhook:<i>`` or ``event_grid``) and ``target``, the address as
    it may be shown (scheme, host and port: a URL's path or query may carry the receiver's token)."""

    to: str
    target: str
    state: DeliveryState = "owed"
    tries: int = 0
    due_at: datetime | None = None  # the next try is not sent before this
    lease: str | None = None  # the token of the worker sending it now
    lease_until: datetime | None = None
    attempts: tuple[Attempt, ...] = ()
    reason: str | None = None  # why it failed, once it has
    settled_at: datetime | None = None

    def sendable(self, now: datetime) -> bool:
        """Owed, due, and no live lease on it."""
        return (
            self.state == "owed"
            and (self.due_at is None or self.due_at <= now)
            and (self.lease_until is None or self.lease_until <= now)
        )

    def to_json(self) -> dict[str, Any]:
        data = {
            "to": self.to,
            "target": self.target,
            "state": self.state,
            "tries": self.tries,
            "due_at": iso(self.due_at),
            "lease": self.lease,
            "lease_until": iso(self.lease_until),
            "attempts": [a.to_json() for a in self.attempts],
            "reason": self.reason,
            "settled_at": iso(self.settled_at),
        }
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Delivery:
        state = data.get("state") or "owed"
        if state not in DELIVERY_STATES:
            raise ValueError(f"delivery state {state!r} is none of {', '.join(DELIVERY_STATES)}")
        return cls(
            to=str(data["to"]),
            target=str(data.get("target") or ""),
            state=state,
            tries=int(data.get("tries") or 0),
            due_at=stamp(data.get("due_at")),
            lease=data.get("lease"),
            lease_until=stamp(data.get("lease_until")),
            attempts=tuple(Attempt.from_json(a) for a in data.get("attempts") or []),
            reason=data.get("reason"),
            settled_at=stamp(data.get("settled_at")),
        )


@dataclass(frozen=True)
class OwedEvent:
    """One event the run went through, as it was when it happened: ``id`` (``<run id>:<event>``, the same on
    every try and to every destination, so receivers drop duplicates), when it happened, the body people are
    sent (None once every delivery settled and room was needed), and one delivery per destination."""

    id: str
    event: str
    at: datetime
    body: dict[str, Any] | None
    deliveries: tuple[Delivery, ...]

    @property
    def settled(self) -> bool:
        return all(d.state != "owed" for d in self.deliveries)

    def delivery(self, to: str) -> Delivery | None:
        return next((d for d in self.deliveries if d.to == to), None)

    def with_delivery(self, delivery: Delivery) -> OwedEvent:
        return replace(self, deliveries=tuple(delivery if d.to == delivery.to else d for d in self.deliveries))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "at": self.at.isoformat(),
            **({"body": self.body} if self.body is not None else {}),
            "deliveries": [d.to_json() for d in self.deliveries],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OwedEvent:
        return cls(
            id=str(data["id"]),
            event=str(data["event"]),
            at=datetime.fromisoformat(data["at"]),
            body=data.get("body"),
            deliveries=tuple(Delivery.from_json(d) for d in data.get("deliveries") or []),
        )


@dataclass(frozen=True)
class Outbox:
    """The run's events in the order they happened, each with its deliveries."""

    events: tuple[OwedEvent, ...] = ()

    def has(self, event_id: str) -> bool:
        return any(e.id == event_id for e in self.events)

    @property
    def owing(self) -> bool:
        return any(not e.settled for e in self.events)

    def destinations(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.events:
            for d in e.deliveries:
                seen.setdefault(d.to)
        return list(seen)

    def head(self, to: str) -> OwedEvent | None:
        """The first event still owed to ``to``: nothing after it goes there before it is delivered or given up,
        so each destination hears a run's events in the order they happened."""
        for e in self.events:
            d = e.delivery(to)
            if d is not None and d.state == "owed":
                return e
        return None

    def added(self, event: OwedEvent) -> Outbox:
        return Outbox((*self.events, event)).fitted()

    def with_delivery(self, event_id: str, delivery: Delivery) -> Outbox:
        return Outbox(tuple(e.with_delivery(delivery) if e.id == event_id else e for e in self.events)).fitted()

    def fitted(self, budget: int = MAX_FIELD_JSON_CHARS) -> Outbox:
        """The outbox within ``budget`` characters of stored JSON, so a run always stays writable: settled
        deliveries keep their last attempt only, then settled events lose their bodies, then the oldest settled
        events go (what is owed is never dropped; its body is bounded by shared/notify.py)."""
        box = self
        if json_chars(box.to_json()) <= budget:
            return box
        box = Outbox(
            tuple(
                replace(e, deliveries=tuple(_last_attempt(d) for d in e.deliveries)) if e.settled else e
                for e in box.events
            )
        )
        if json_chars(box.to_json()) <= budget:
            return box
        box = Outbox(tuple(replace(e, body=None) if e.settled else e for e in box.events))
        events = list(box.events)
        while json_chars(Outbox(tuple(events)).to_json()) > budget:
            oldest = next((i for i, e in enumerate(events) if e.settled), None)
            if oldest is None:
                break
            events.pop(oldest)
        return Outbox(tuple(events))

    def to_json(self) -> dict[str, Any]:
        return {"events": [e.to_json() for e in self.events]}

    def shown(self) -> list[dict[str, Any]]:
        """What status shows: each event, and per destination its state, tries, attempts, the next try or why
        it was given up (no body, no lease)."""
        return [
            {
                "id": e.id,
                "event": e.event,
                "at": e.at.isoformat(),
                "deliveries": [
                    {k: v for k, v in d.to_json().items() if k not in ("lease", "lease_until")} for d in e.deliveries
                ],
            }
            for e in self.events
        ]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outbox:
        return cls(tuple(OwedEvent.from_json(e) for e in data.get("events") or []))


def _last_attempt(delivery: Delivery) -> Delivery:
    return replace(delivery, attempts=delivery.attempts[-1:])
