"""``autopilot rollback ENDPOINT``: traffic back on the deployment the latest canary on a shared endpoint
replaced (``canary.py``), while that deployment still exists (within the replaced run's grace period).

Recorded on both runs: the canary's ``rollout`` gets ``phase: rolled_back`` and who/when, and is retired by
the cleanup's retire step (a canary still observed ends ``deploy_failed``); the previous run loses its
``replaced_by`` and ``retire_after``, so it is kept. Traffic is set first and each write is idempotent, so a
repeated or interrupted rollback ends the same.
"""

from __future__ import annotations

from shared.exceptions import AutopilotError, NotFoundError
from shared.ledger.record import RunRecord
from shared.platform.port import DeploymentSummary, MLPlatform
from shared.runs import RunStore
from shared.services.canary import is_canary
from shared.states import RunState


class RollbackError(AutopilotError):
    """Nothing can be rolled back on the endpoint; the message says why."""


def _latest_canary(store: RunStore, deployments: list[DeploymentSummary]) -> RunRecord | None:
    names = {d.name for d in deployments}
    found = []
    for deployment in deployments:
        record = store.get(deployment.run_id) if deployment.run_id else None
        if record is None or not is_canary(record) or not record.rollout:
            continue
        if record.rollout.get("phase") in {"observing", "promoted", "rolled_back"} and record.rollout.get(
            "previous_deployment"
        ) in names | {None}:
            found.append(record)
    return max(found, key=lambda r: str((r.rollout or {}).get("started_at") or ""), default=None)


def rollback_endpoint(store: RunStore, platform: MLPlatform, endpoint: str, *, by: str) -> RunRecord:
    """Traffic back on the deployment the latest canary replaced; returns that canary's run. Repeating it
    is a no-op; once the previous deployment was retired there is nothing to go back to."""
    try:
        deployments = platform.list_deployments(endpoint)
    except NotFoundError:
        raise RollbackError(f"no endpoint {endpoint!r} managed by the app") from None
    canary = _latest_canary(store, deployments)
    if canary is None or not canary.rollout:
        raise RollbackError(f"endpoint {endpoint} has no canary whose previous deployment still exists")
    previous = str(canary.rollout["previous_deployment"])
    if previous not in {d.name for d in deployments}:
        raise RollbackError(f"the previous deployment {previous} of endpoint {endpoint} was already retired")
    assert canary.deployment_name
    platform.set_traffic(endpoint, {previous: 100, canary.deployment_name: 0})
    now = store.clock()
    at = now.isoformat()

    def restored(r: RunRecord) -> None:
        rollout = dict(r.rollout or {})
        if rollout.get("replaced_by") != canary.run_id:
            return
        for key in ("replaced_by", "retire_after", "retire_role"):
            rollout.pop(key, None)
        r.rollout = rollout
        r.notes.append(f"serving again: run {canary.run_id} was rolled back by {by} at {at}")

    store.update(str(canary.rollout["previous_run"]), restored)
    if canary.rollout.get("phase") == "rolled_back":
        return canary

    def rolled_back(r: RunRecord) -> None:
        r.rollout = {
            **(r.rollout or {}),
            "phase": "rolled_back",
            "rolled_back": {"by": by, "at": at},
            "retire_after": at,  # nothing serves from it any more: the retire step deletes it
        }
        r.notes.append(f"rolled back by {by} at {at}: traffic is back on {previous}")
        if r.state == RunState.CANARY:
            r.errors = [{"path": "deployment", "message": f"rolled back by {by}"}]
            r.last_error_code = "RolledBack"

    if canary.state == RunState.CANARY:
        written = store.advance(canary, RunState.DEPLOY_FAILED, rolled_back)
    else:
        written = store.update(canary, rolled_back)
    return written or store.get(canary.run_id) or canary
