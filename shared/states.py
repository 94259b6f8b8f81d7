"""The run state machine: the only legal moves of a run through its life."""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    RECEIVED = "received"
    REJECTED = "rejected"
    SUBMITTED = "submitted"
    RUNNING = "running"
    FAILED = "failed"
    CANCELED = "canceled"
    COMPLETED = "completed"
    REGISTERED = "registered"
    DEPLOYING = "deploying"
    CANARY = "canary"  # a new deployment on a shared endpoint, under observation with a share of the traffic
    DEPLOYED = "deployed"
    DEPLOY_FAILED = "deploy_failed"
    DELETED = "deleted"


S = RunState
# Forward moves only. Skips are allowed where an event can be lost (a job can complete with no
# "running" event seen). A submit that keeps failing, or a registration that fails for good, ends failed.
# A person can cancel a run until it is deployed (``autopilot cancel``). A run deploying onto an endpoint that
# already serves an earlier run goes through ``canary`` (shared/services/canary.py) before ``deployed``.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    S.RECEIVED: frozenset({S.REJECTED, S.SUBMITTED, S.FAILED, S.CANCELED}),
    S.SUBMITTED: frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.CANCELED}),
    S.COMPLETED: frozenset({S.REGISTERED, S.FAILED, S.CANCELED}),
    S.REGISTERED: frozenset({S.DEPLOYING, S.DEPLOY_FAILED, S.CANCELED}),
    S.DEPLOYING: frozenset({S.CANARY, S.DEPLOYED, S.DEPLOY_FAILED, S.CANCELED}),
    S.CANARY: frozenset({S.DEPLOYED, S.DEPLOY_FAILED, S.CANCELED}),
    S.DEPLOYED: frozenset({S.DELETED}),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
    S.DEPLOY_FAILED: frozenset(),
    S.DELETED: frozenset(),
}

TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
# States in which the platform may still change under the run, so the reconcile timer looks at them.
ACTIVE = frozenset({S.RECEIVED, S.SUBMITTED, S.RUNNING, S.COMPLETED, S.REGISTERED, S.DEPLOYING, S.CANARY})


def can_move(current: RunState, target: RunState) -> bool:
    return target in TRANSITIONS[current]


class RolloutPhase(StrEnum):
    """Where a canary on a shared endpoint is (shared/services/canary.py); the run's state says the rest."""

    DEPLOYING = "deploying"  # its deployment is being created, at 0% of the traffic
    OBSERVING = "observing"  # it has its share and is watched for the window (the run is ``canary``)
    PROMOTED = "promoted"  # it passed: all the traffic is on it
    FAILED = "failed"  # provisioning, the smoke test or the error rate: the traffic is back on the previous one
    ROLLED_BACK = "rolled_back"  # a person put the traffic back (``autopilot rollback``)


P = RolloutPhase
# Forward moves only, as for runs. A promoted canary can still be rolled back while the deployment it replaced
# is kept (its grace period); a failed or rolled-back one is over.
PHASE_TRANSITIONS: dict[RolloutPhase, frozenset[RolloutPhase]] = {
    P.DEPLOYING: frozenset({P.OBSERVING, P.FAILED}),
    P.OBSERVING: frozenset({P.PROMOTED, P.FAILED, P.ROLLED_BACK}),
    P.PROMOTED: frozenset({P.ROLLED_BACK}),
    P.FAILED: frozenset(),
    P.ROLLED_BACK: frozenset(),
}


class IllegalPhaseMove(ValueError):
    """A canary asked to move where its phase does not lead: another writer moved it first, decide again."""


def check_phase_move(current: RolloutPhase, target: RolloutPhase) -> None:
    if target not in PHASE_TRANSITIONS[current]:
        raise IllegalPhaseMove(f"a canary {current.value} cannot become {target.value}")
