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
