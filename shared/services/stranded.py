"""Runs left in ``received`` past a deadline end ``failed`` with a reason.

A run is created in ``received`` before its config is read, so a submit that dies without raising a retry, a
blob parked in the poison queue, or a future loader bug would leave the run there with no word to the person
who dropped the file. Reconcile's runs step hands this module the ``received`` runs of the active index;
nothing else looks at them. The deadline is well past the blob trigger's own retries (5 tries), so a submit
still being retried is not cut short. Idempotent: a run already moved on is left alone by the state machine.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from shared.exceptions import FieldIssue
from shared.ledger.record import RunRecord
from shared.runs import RunStore
from shared.states import RunState

log = logging.getLogger(__name__)

STRANDED_CODE = "StuckInReceived"
DEFAULT_RECEIVED_DEADLINE = timedelta(minutes=30)


def fail_if_stranded(store: RunStore, record: RunRecord, now: datetime, deadline: timedelta) -> RunRecord | None:
    """Fail a ``received`` run whose last write is older than ``deadline``, with the reason on the run; the
    reconcile sweep hands every active ``received`` run here. None when it is still within its time."""
    age = now - record.updated_at
    if record.state != RunState.RECEIVED or age <= deadline:
        return None
    minutes = int(age.total_seconds() // 60)
    tries = record.attempts.get("submit", 0)
    message = (
        f"the config was received {minutes} minutes ago but never submitted"
        + (f" ({tries} submit tries failed)" if tries else "")
        + "; check the function logs, then drop the file again with a change"
    )

    def fill(r: RunRecord) -> None:
        r.errors = [FieldIssue("submit", message)]
        r.last_error_code = STRANDED_CODE

    after = store.advance(record, RunState.FAILED, fill)
    log.warning("run %s: stuck in received for %d minutes; failed", record.run_id, minutes)
    return after
