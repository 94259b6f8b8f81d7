"""The guarded step every service takes: read the run once, check its state, act, advance with the outcome.

Steps take the record their caller already holds (with its ETag) and hand back the record they wrote, so a
chain of steps (job completed -> register -> deploy) reads the run once. The write is the ETag write of
``RunStore``: a stale record makes it re-read and re-decide, never overwrite.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from shared import telemetry
from shared.exceptions import FieldIssue
from shared.ledger.parts import summarised
from shared.ledger.record import RunRecord
from shared.runs import Mutation, RunStore
from shared.states import RunState


@dataclass(frozen=True)
class Outcome:
    """What a step decided: move to ``target`` (None: stay) applying ``mutate``."""

    target: RunState | None = None
    mutate: Mutation | None = None


def failure(message: str, code: str, path: str = "job") -> Mutation:
    """The fields a failed step leaves on the run: one error on ``path`` and the platform's code."""
    errors = summarised([FieldIssue(path, message)])

    def fill(record: RunRecord) -> None:
        record.errors = list(errors)
        record.last_error_code = code

    return fill


def rejection(issues: Iterable[FieldIssue], code: str) -> Mutation:
    """A rejection's fields: its problems (``summarised``: any number fits the run) and the code."""
    errors = summarised(list(issues))

    def fill(record: RunRecord) -> None:
        record.errors = list(errors)
        record.last_error_code = code

    return fill


def guarded(
    store: RunStore,
    run: RunRecord | str,
    starts: RunState | Collection[RunState],
    act: Callable[[RunRecord], Outcome | None],
) -> RunRecord | None:
    """Run ``act`` if the run is in ``starts``; write its outcome. Returns the written record, or None."""
    record = store.get(run) if isinstance(run, str) else run
    allowed = {starts} if isinstance(starts, RunState) else set(starts)
    if record is None or record.state not in allowed:
        return None
    with telemetry.run_scope(record, span="autopilot.step"):
        outcome = act(record)
        if outcome is None:
            return None
        if outcome.target is None:
            return store.update(record, outcome.mutate) if outcome.mutate else None
        return store.advance(record, outcome.target, outcome.mutate)
