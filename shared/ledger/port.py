"""What the services need from a ledger. Adapters: Azure Table (``table.py``); tests use an in-memory fake.

Besides the runs themselves a ledger keeps two indexes, so that what runs every few minutes costs in
proportion to what is live, never to every run ever made:

- the **active index**: one entry per run that may still change. It is a superset of the active runs, never
  a subset: an entry is written *before* its run is created and removed only *after* the run's terminal
  state is written, so a crash between the two leaves a stale entry (the sweep drops it when it reads the
  run) but never an active run nobody looks at. Entries carry the sweep lease and when the run was last
  handled, which is what makes the sweep order rotate.
- the **recent index**: run ids newest first, for ``autopilot status`` pages.
- the **outbox index**: one entry per run that may owe notifications (shared/ledger/outbox.py), for the
  delivery worker. A superset too: the write that adds an owed event marks the run first (``mark_owing``, which
  also changes the entry's ETag), and the worker drops an entry only when the run owes nothing, the entry is
  older than a grace and unchanged since the worker listed it (``drop_owing``).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.ledger.record import RunRecord
from shared.states import RunState


@dataclass(frozen=True)
class ActiveEntry:
    """One run in the active index. ``etag`` is the entry's version (claims are ETag writes)."""

    run_id: str
    indexed_at: datetime
    handled_at: datetime | None = None  # when a sweep last claimed it
    lease_until: datetime | None = None  # a sweep holds it until then
    etag: str | None = None

    @property
    def turn(self) -> datetime:
        """Sweeps take runs in this order: least recently handled first, new runs by when they came."""
        return self.handled_at or self.indexed_at


@dataclass(frozen=True)
class OwingEntry:
    """One run in the outbox index: when it was last marked, and the entry's version."""

    run_id: str
    marked_at: datetime
    etag: str | None = None


class Ledger(Protocol):
    def get(self, run_id: str) -> RunRecord | None:
        """The run, with its current ETag, or None."""

    def create(self, record: RunRecord) -> RunRecord:
        """Insert a new run (and its index entries); raises ``AlreadyExistsError`` if it exists."""

    def replace(self, record: RunRecord) -> RunRecord:
        """Write the run if its ETag still matches; raises ``ConcurrencyError`` otherwise.

        A run written in a terminal state leaves the active index."""

    def list(self, states: Iterable[RunState] | None = None) -> list[RunRecord]:
        """Every run, or those in the given states: reads the whole ledger (``status --all``, migrations)."""

    def with_prefix(self, prefix: str) -> builtins.list[RunRecord]:
        """Runs whose id starts with ``prefix`` (a key range: ``<config name>-`` finds a config's runs)."""

    def active(self) -> builtins.list[ActiveEntry]:
        """The active index (a superset of the runs that may still change)."""

    def claim(self, entry: ActiveEntry, now: datetime, until: datetime) -> bool:
        """Take the sweep lease on ``entry`` until ``until``; False if another sweep holds it or took it first."""

    def release(self, run_id: str) -> None:
        """End the sweep lease on the run (kept: when it was handled, which decides its next turn)."""

    def drop_active(self, run_id: str) -> None:
        """Remove a stale entry (its run is finished or gone); a missing entry is not an error."""

    def recent(self, limit: int, *, skip: int = 0) -> builtins.list[str]:
        """Run ids newest first: ``limit`` of them after the first ``skip``."""

    def owing(self) -> builtins.list[OwingEntry]:
        """The outbox index (a superset of the runs that owe notifications)."""

    def mark_owing(self, run_id: str, at: datetime) -> None:
        """Put the run in the outbox index, or mark its entry again (a new ETag): before the write that adds an
        owed event."""

    def drop_owing(self, entry: OwingEntry) -> bool:
        """Remove the entry if it is unchanged since it was listed; False if it was marked again meanwhile."""
