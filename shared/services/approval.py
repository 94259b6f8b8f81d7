"""Manual approval of a fine-tuned model before it is deployed (``deployment.approval: manual``).

The channel is the ledger: ``autopilot approve|reject`` records the decision on the run (who, when, why) with
the same ETag discipline as every other write, and the deploy step (the ModelRegistered event, or the next
reconcile sweep) acts on it. Nothing new has to be exposed or secured on the Function App: whoever may read a
run's status already has the storage access this needs, and the decision is durable and visible in the
status blob. A decision may be made ahead, while the run still trains; it is final once made.
"""

from __future__ import annotations

from shared.exceptions import AutopilotError
from shared.ledger.parts import Approval, Decision
from shared.ledger.record import RunRecord
from shared.runs import RunStore
from shared.states import RunState

__all__ = ["DECIDABLE", "ApprovalError", "Decision", "decide"]
# A decision is taken until deployment starts; after that there is nothing left to approve.
DECIDABLE = frozenset({RunState.SUBMITTED, RunState.RUNNING, RunState.COMPLETED, RunState.REGISTERED})


class ApprovalError(AutopilotError):
    """The decision cannot be recorded; the message says why."""


def decide(store: RunStore, run_id: str, decision: Decision, *, by: str, reason: str | None = None) -> RunRecord:
    """Record ``decision`` on the run. Repeating the same decision is a no-op; changing it is refused."""
    if decision == "rejected" and not (reason and reason.strip()):
        raise ApprovalError("a rejection needs a reason (--reason)")
    at = store.clock()

    def record_decision(record: RunRecord) -> None:
        # Checked on the copy being written: a concurrent decision makes the store re-read and re-check.
        if not record.manual_approval:
            raise ApprovalError(f"run {record.run_id} deploys without approval (deployment.approval is auto)")
        made = record.approval
        if made is not None:
            if made.decision == decision:
                return
            raise ApprovalError(
                f"run {record.run_id} was already {made.decision} by {made.by} at {made.at.isoformat()}"
            )
        if record.state not in DECIDABLE:
            raise ApprovalError(f"run {record.run_id} is {record.state.value}: there is nothing to approve")
        record.approval = Approval(decision, by, at, (reason or "").strip())

    if store.get(run_id) is None:
        raise ApprovalError(f"no run {run_id!r}")
    updated = store.update(run_id, record_decision)
    current = updated or store.get(run_id)
    assert current is not None
    return current
