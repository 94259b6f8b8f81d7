"""Sweeps bounded in time and fair: the engine the timers share.

A sweep walks the ledger's active index (never the finished runs) in turn order: least recently handled
first, new runs by when they came. For each entry it reads the run once, drops the entry if the run is
finished or gone, and otherwise claims it (an ETag write on the entry, so two sweeps never handle one run at
once) and hands the record to the step. At most ``concurrency`` runs are in hand at a time, and no new run is
started once the budget is spent: what is left keeps its early turn and is first in the next sweep. Claiming
moves a run to the back of the order, so every active run is handled within ceil(active / handled per
sweep) sweeps.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from shared import telemetry
from shared.ledger.port import ActiveEntry
from shared.ledger.record import RunRecord
from shared.platform.port import MLPlatform
from shared.runs import Mutation, RunStore
from shared.states import TERMINAL, RunState

log = logging.getLogger(__name__)

T = TypeVar("T")
Monotonic = Callable[[], float]
# A claim outlives the sweep's deadline by this much, for the calls still in flight when it passes.
LEASE_GRACE = timedelta(minutes=2)
# An entry whose run is missing is dropped only once it is this old: ``create`` writes the entry just before
# the run, and a sweep reading in between must not drop the entry of a run about to exist.
MISSING_RUN_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class SweepBudget:
    """How long one timer invocation may start work, and how many runs it handles at once."""

    seconds: float = 240.0
    concurrency: int = 8


class Deadline:
    """The budget of one invocation, shared by its sweep steps; ``monotonic`` is injectable for tests."""

    def __init__(self, seconds: float, monotonic: Monotonic = time.monotonic) -> None:
        self._monotonic = monotonic
        self._end = monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._end - self._monotonic())

    @property
    def expired(self) -> bool:
        return self.left() <= 0


@dataclass(frozen=True)
class SweepContext:
    """What every reconcile sweep step gets, whole: collaborators, the invocation's time, the budget it shares,
    and the settings the steps apply."""

    store: RunStore
    platform: MLPlatform
    now: datetime
    deadline: Deadline
    concurrency: int
    deploy_timeout: timedelta
    received_deadline: timedelta
    orphan_grace: timedelta


class SweepRuns:
    """The runs one sweep looks at, each read from the ledger once: a write through it keeps the copy current
    (with its ETag), so the next look at the same run in the sweep needs no read."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._seen: dict[str, RunRecord | None] = {}

    def get(self, run_id: str) -> RunRecord | None:
        if run_id not in self._seen:
            self._seen[run_id] = self.store.get(run_id)
        return self._seen[run_id]

    def advance(self, run: RunRecord | str, target: RunState, mutate: Mutation | None = None) -> RunRecord | None:
        return self._kept(run, self.store.advance(self._known(run), target, mutate))

    def update(self, run: RunRecord | str, mutate: Mutation) -> RunRecord | None:
        return self._kept(run, self.store.update(self._known(run), mutate))

    def _known(self, run: RunRecord | str) -> RunRecord | str:
        if isinstance(run, str):
            return self._seen.get(run) or run
        return run

    def _kept(self, run: RunRecord | str, written: RunRecord | None) -> RunRecord | None:
        run_id = run if isinstance(run, str) else run.run_id
        if written is not None:
            self._seen[run_id] = written
        else:
            self._seen.pop(run_id, None)  # not written (a duplicate, an illegal move): read again if asked
        return written


@dataclass
class SweepReport(Generic[T]):
    results: list[T] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # stale index entries removed
    busy: list[str] = field(default_factory=list)  # held by another sweep
    left: list[str] = field(default_factory=list)  # not reached before the deadline: first next time
    failed: list[str] = field(default_factory=list)  # storage failed reading or claiming them: next time


def sweep_active(
    store: RunStore,
    step: Callable[[RunRecord], T],
    *,
    wants: Callable[[RunRecord], bool],
    deadline: Deadline,
    concurrency: int,
) -> SweepReport[T]:
    """Hand each active run that ``wants`` accepts to ``step``, in turn order, within ``deadline``."""
    report: SweepReport[T] = SweepReport()
    entries: list[ActiveEntry] = sorted(store.ledger.active(), key=lambda e: (e.turn, e.run_id))
    lease = timedelta(seconds=deadline.left()) + LEASE_GRACE

    def take(entry: ActiveEntry) -> tuple[str, T] | None:
        try:
            record = store.ledger.get(entry.run_id)
            if record is None and store.clock() - entry.indexed_at < MISSING_RUN_GRACE:
                return None  # being created right now
            if record is None or record.state in TERMINAL:
                store.ledger.drop_active(entry.run_id)
                report.dropped.append(entry.run_id)
                return None
            if not wants(record):
                return None
            now = store.clock()
            if not store.ledger.claim(entry, now, now + lease):
                report.busy.append(entry.run_id)
                return None
        except Exception as exc:  # storage trouble with one run must not stop the sweep; its turn stays early
            log.warning("run %s: not taken by the sweep: %s", entry.run_id, exc)
            report.failed.append(entry.run_id)
            return None
        try:
            with telemetry.run_scope(record, span="autopilot.sweep.run"):
                return entry.run_id, step(record)
        finally:
            try:
                store.ledger.release(entry.run_id)
            except Exception as exc:  # the lease then runs out by itself
                log.warning("run %s: lease not released: %s", entry.run_id, exc)

    def collect(done: Future[tuple[str, T] | None]) -> None:
        outcome = done.result()  # ``step`` reports its own failures; anything else is a bug worth raising
        if outcome is not None:
            report.results.append(outcome[1])

    if concurrency <= 1:
        for i, entry in enumerate(entries):
            if deadline.expired:
                report.left = [e.run_id for e in entries[i:]]
                break
            outcome = take(entry)
            if outcome is not None:
                report.results.append(outcome[1])
        return report

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sweep") as pool:
        in_flight: set[Future[tuple[str, T] | None]] = set()
        for i, entry in enumerate(entries):
            if len(in_flight) >= concurrency:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for f in done:
                    collect(f)
            if deadline.expired:
                report.left = [e.run_id for e in entries[i:]]
                break
            # In the invocation's context: each run's span is a child of the invocation's, in the same trace.
            in_flight.add(pool.submit(contextvars.copy_context().run, take, entry))
        for f in in_flight:
            collect(f)
    if report.left:
        log.info("sweep: budget spent; %d runs left for the next sweep", len(report.left))
    return report
