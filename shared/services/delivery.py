"""The delivery worker: sends the notifications runs owe (shared/notify.py, shared/ledger/outbox.py).

Its own timer (functions/timers.py ``deliver_notifications``), never an event handler or a sweep, so a receiver
that hangs holds up nothing but its own deliveries. Each invocation reads the outbox index and, for each run
in it, each destination's first owed event (the head: a run's events go to each destination in order), and
for each head that is due:

1. **claim** it: an ETag write of the run that counts the try, records an attempt ``sending`` and takes a
   lease. Two workers never send one delivery at once: the second's write conflicts, it re-reads and finds the
   lease. A worker that dies after this leaves a lease that runs out (``LEASE``); the next try then records
   the lost one as such and sends again, with the same ``webhook-id`` (at least once, deduplicated by id);
2. **send** it (one try, bounded by shared/notify_http.py's timeout);
3. **settle** it: an ETag write that records the outcome and either marks it delivered, schedules the next
   try (``RETRY_AFTER``), or gives it up with the reason.

Destinations are handled ``concurrency`` at a time, each in its own order, and no new try starts once the
budget is spent.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TypeVar

from shared import telemetry
from shared.ledger.outbox import MAX_ATTEMPTS_KEPT, SENDING, Attempt, Delivery, OwedEvent
from shared.ledger.port import OwingEntry
from shared.ledger.record import RunRecord
from shared.notify import MAX_TRIES, RETRY_AFTER, Outcome, Send
from shared.runs import RunStore
from shared.services.sweep import Deadline

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

# How long a claimed try may take before another worker may take it over: well over one try's timeout.
LEASE = timedelta(minutes=2)
# An index entry of a run that owes nothing is dropped once it is this old: the write that marked it may still
# be landing (it marks before it writes).
STALE_ENTRY_GRACE = timedelta(minutes=10)
LOST = "no outcome recorded (the worker stopped while sending)"


@dataclass(frozen=True)
class Sent:
    """One try the worker made: run, event id, destination, and what came of it."""

    run_id: str
    event_id: str
    to: str
    outcome: str
    settled: str  # "delivered", "owed" (another try later) or "failed"


@dataclass
class DeliveryReport:
    sent: list[Sent] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # stale index entries removed
    failed: list[str] = field(default_factory=list)  # runs storage failed on: next time


def deliver_owed(
    store: RunStore,
    senders: Mapping[str, Send],
    *,
    deadline: Deadline,
    concurrency: int = 1,
    token: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> DeliveryReport:
    """Send what the runs in the outbox index owe and is due. ``senders`` by destination kind (``webhook``,
    ``event_grid``). Each destination of each run is one unit of work, ``concurrency`` at a time: a receiver
    that hangs costs one try's timeout of one thread, not the other destinations' turn."""
    report = DeliveryReport()
    entries = sorted(store.ledger.owing(), key=lambda e: (e.marked_at, e.run_id))
    records = [r for r in _map(lambda e: _owing_run(store, e, report), entries, concurrency) if r is not None]
    units = [(record, to) for record in records for to in record.outbox.destinations()]

    def one(unit: tuple[RunRecord, str]) -> None:
        record, to = unit
        with telemetry.run_scope(record, span="autopilot.deliver"):
            try:
                report.sent.extend(_deliver_destination(store, record, to, senders, deadline, token))
            except Exception as exc:  # storage trouble with one run must not stop the others
                log.warning("run %s: notifications to %s not delivered this time: %s", record.run_id, to, exc)
                report.failed.append(record.run_id)

    _map(one, units, concurrency)
    return report


def _map(work: Callable[[T], R], items: list[T], concurrency: int) -> list[R]:
    if concurrency <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="deliver") as pool:
        # Each item in a copy of the invocation's context (made here, one per item): its run's span is a child of
        # the invocation's.
        contexts = [contextvars.copy_context() for _ in items]
        return list(pool.map(lambda pair: pair[0].run(work, pair[1]), zip(contexts, items, strict=True)))


def _owing_run(store: RunStore, entry: OwingEntry, report: DeliveryReport) -> RunRecord | None:
    """The entry's run if it owes something; a stale entry is dropped once it is old enough."""
    try:
        record = store.get(entry.run_id)
        if record is not None and record.outbox.owing:
            return record
        if store.clock() - entry.marked_at >= STALE_ENTRY_GRACE and store.ledger.drop_owing(entry):
            report.dropped.append(entry.run_id)
    except Exception as exc:
        log.warning("run %s: not read for its notifications: %s", entry.run_id, exc)
        report.failed.append(entry.run_id)
    return None


def _deliver_destination(
    store: RunStore,
    record: RunRecord | None,
    to: str,
    senders: Mapping[str, Send],
    deadline: Deadline,
    token: Callable[[], str],
) -> list[Sent]:
    """The run's events owed to ``to``, in order, while each is due and delivered (a failed try stops it)."""
    sent: list[Sent] = []
    send = senders.get(to.partition(":")[0])
    while record is not None and not deadline.expired:
        run_id = record.run_id
        head = record.outbox.head(to)
        delivery = head.delivery(to) if head is not None else None
        if head is None or delivery is None or not delivery.sendable(store.clock()):
            break
        mine = token()
        claimed = _claim(store, record, head.id, to, mine)
        if claimed is None:
            break  # another worker has it, or it was settled meanwhile
        record, delivery = claimed
        if delivery.state == "failed":  # its tries were spent by workers that died
            sent.append(Sent(run_id, head.id, to, delivery.reason or "", "failed"))
            continue
        outcome = send(record, head, delivery) if send is not None else Outcome(f"no sender for {to}")
        settled = _settle(store, record, head.id, to, mine, outcome)
        record = settled if settled is not None else store.get(run_id)
        state = _state_of(record, head.id, to)
        log.info(
            "run %s: %s to %s: %s (%s)",
            run_id,
            head.event,
            delivery.target,
            outcome.outcome,
            state,
            extra={"run_id": run_id},
        )
        sent.append(Sent(run_id, head.id, to, outcome.outcome, state))
    return sent


def _find(record: RunRecord, event_id: str, to: str) -> tuple[OwedEvent, Delivery] | None:
    event = next((e for e in record.outbox.events if e.id == event_id), None)
    delivery = event.delivery(to) if event is not None else None
    return (event, delivery) if event is not None and delivery is not None else None


def _state_of(record: RunRecord | None, event_id: str, to: str) -> str:
    found = _find(record, event_id, to) if record is not None else None
    return found[1].state if found is not None else "unknown"


def _claim(store: RunStore, record: RunRecord, event_id: str, to: str, mine: str) -> tuple[RunRecord, Delivery] | None:
    """Take the lease on the delivery (or give it up if dead workers spent its tries); None if not ours."""

    def take(r: RunRecord) -> None:
        now = store.clock()
        found = _find(r, event_id, to)
        head = r.outbox.head(to)
        if found is None or head is None or head.id != event_id or not found[1].sendable(now):
            return
        d = found[1]
        attempts = d.attempts
        if attempts and attempts[-1].outcome == SENDING:
            attempts = (*attempts[:-1], replace(attempts[-1], outcome=LOST))
        if d.tries >= MAX_TRIES:
            reason = f"gave up after {d.tries} tries: {attempts[-1].outcome if attempts else LOST}"
            d = replace(d, state="failed", reason=reason, settled_at=now, lease=mine, lease_until=None, due_at=None)
            d = replace(d, attempts=attempts)
        else:
            attempts = (*attempts, Attempt(now, SENDING))[-MAX_ATTEMPTS_KEPT:]
            d = replace(d, tries=d.tries + 1, lease=mine, lease_until=now + LEASE, attempts=attempts)
        r.outbox = r.outbox.with_delivery(event_id, d)

    written = store.update(record, take)
    found = _find(written, event_id, to) if written is not None else None
    if written is None or found is None or found[1].lease != mine:
        return None
    return written, found[1]


def _settle(
    store: RunStore, record: RunRecord, event_id: str, to: str, mine: str, outcome: Outcome
) -> RunRecord | None:
    """Record the try's outcome, if the lease is still this worker's (else another took over: its write wins)."""

    def settle(r: RunRecord) -> None:
        now = store.clock()
        found = _find(r, event_id, to)
        if found is None or found[1].lease != mine:
            return
        d = found[1]
        next_at = now + RETRY_AFTER[d.tries - 1] if outcome.retry and d.tries < MAX_TRIES else None
        attempt = Attempt(now, outcome.outcome, outcome.status, next_at)
        attempts = d.attempts[:-1] if d.attempts and d.attempts[-1].outcome == SENDING else d.attempts
        d = replace(d, attempts=(*attempts, attempt)[-MAX_ATTEMPTS_KEPT:], lease=None, lease_until=None)
        if outcome.delivered:
            d = replace(d, state="delivered", due_at=None, settled_at=now)
        elif next_at is not None:
            d = replace(d, due_at=next_at)
        else:
            reason = outcome.outcome
            if outcome.retry:
                reason = f"gave up after {d.tries} tries over {_span(now - found[0].at)}: {outcome.outcome}"
            d = replace(d, state="failed", due_at=None, settled_at=now, reason=reason)
        r.outbox = r.outbox.with_delivery(event_id, d)

    return store.update(record, settle)


def _span(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{delta.total_seconds() / 60:.0f} min"
