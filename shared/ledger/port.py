"""What the services need from a ledger. Adapters: Azure Table (``table.py``); tests use an in-memory fake."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from shared.ledger.record import RunRecord
from shared.states import RunState


class Ledger(Protocol):
    def get(self, run_id: str) -> RunRecord | None:
        """The run, with its current ETag, or None."""

    def create(self, record: RunRecord) -> RunRecord:
        """Insert a new run; raises ``AlreadyExistsError`` if it exists. Returns it with its ETag."""

    def replace(self, record: RunRecord) -> RunRecord:
        """Write the run if its ETag still matches; raises ``ConcurrencyError`` otherwise."""

    def list(self, states: Iterable[RunState] | None = None) -> list[RunRecord]:
        """Every run, or those in the given states."""
