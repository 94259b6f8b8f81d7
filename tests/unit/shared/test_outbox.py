"""The outbox part (shared/ledger/outbox.py): order per destination, and a size that always fits the run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.ledger.limits import MAX_FIELD_JSON_CHARS, json_chars
from shared.ledger.outbox import Attempt, Delivery, Outbox, OwedEvent

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def event(n: int, *states: str, body_chars: int = 100) -> OwedEvent:
    deliveries = tuple(
        Delivery(
            f"webhook:{i}",
            "https://example.org/" + "p" * 100,
            state,  # type: ignore[arg-type]
            tries=4,
            attempts=tuple(Attempt(T0 + timedelta(minutes=k), "HTTP 503", 503, T0) for k in range(4)),
        )
        for i, state in enumerate(states)
    )
    return OwedEvent(f"r:{n}", f"e{n}", T0 + timedelta(minutes=n), {"x": "b" * body_chars}, deliveries)


def test_each_destination_waits_for_its_own_earlier_event_only() -> None:
    box = Outbox((event(1, "delivered", "owed"), event(2, "owed", "owed")))
    assert box.head("webhook:0") == box.events[1]  # its first event was delivered
    assert box.head("webhook:1") == box.events[0]  # the second waits behind the first
    assert box.owing and box.destinations() == ["webhook:0", "webhook:1"]
    assert Outbox.from_json(box.to_json()) == box


def test_an_outbox_of_any_history_fits_the_run_and_keeps_what_is_owed() -> None:
    box = Outbox()
    for n in range(40):
        box = box.added(event(n, *(["delivered"] * 5), "failed", body_chars=3000))
    box = box.added(event(99, "owed", body_chars=3000))
    assert json_chars(box.to_json()) <= MAX_FIELD_JSON_CHARS
    assert box.events[-1].id == "r:99" and box.events[-1].body is not None and box.owing
    assert len(box.events[-1].deliveries[0].attempts) == 4
