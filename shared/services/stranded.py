"""Sweep: runs left in ``received`` past a deadline end ``failed`` with a reason.

A run is created in ``received`` before its config is read, so a submit that dies without raising a retry,
a blob parked in the poison queue, or a future loader bug would leave the run there with no word to the
person who dropped the file. Reconcile calls this sweep; nothing else looks at ``received`` runs. The
deadline is well past the blob trigger's own retries (5 tries), so a submit still being retried is not cut
short. Idempotent: a run already moved on is left alone by the state machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from shared.ledger.record import RunRecord
from shared.runs import RunStore
from shared.states import RunState

log = logging.getLogger(__name__)

STRANDED_CODE = "StuckInReceived"
DEFAULT_RECEIVED_DEADLINE = timedelta(minutes=30)


@dataclass(frozen=True)
class StrandedOutcome:
    run_id: str
    before: str
    after: str
    error: str | None = None


def sweep_received(store: RunStore, *, deadline: timedelta) -> list[StrandedOutcome]:
    """Fail every ``received`` run whose last write is older than ``deadline``, with the reason on the run."""
    now = store.clock()
    outcomes: list[StrandedOutcome] = []
    for record in store.list([RunState.RECEIVED]):
        age = now - record.updated_at
        if age <= deadline:
            continue
        minutes = int(age.total_seconds() // 60)
        tries = record.attempts.get("submit", 0)
        message = (
            f"the config was received {minutes} minutes ago but never submitted"
            + (f" ({tries} submit tries failed)" if tries else "")
            + "; check the function logs, then drop the file again with a change"
        )

        def fill(r: RunRecord, message: str = message) -> None:
            r.errors = [{"path": "submit", "message": message}]
            r.last_error_code = STRANDED_CODE

        after = store.advance(record.run_id, RunState.FAILED, fill)
        log.warning("run %s: stuck in received for %d minutes; failed", record.run_id, minutes)
        outcomes.append(StrandedOutcome(record.run_id, record.state.value, after.state.value if after else "?"))
    return outcomes
