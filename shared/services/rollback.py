"""``autopilot rollback ENDPOINT``: traffic back on the deployment the latest canary on a shared endpoint
replaced (``canary.py``), while that deployment still exists (within the replaced run's grace period).

Recorded on both runs: the canary moves to phase ``rolled_back`` with who/when, and is retired by the
cleanup's retire step (a canary still observed ends ``deploy_failed``); the previous run loses its
``replaced_by`` and ``retire_after``, so it is kept. Traffic is set first and each write is idempotent, so a
repeated or interrupted rollback ends the same.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from shared.exceptions import AutopilotError, FieldIssue, NotFoundError
from shared.ledger.parts import Actor, Canary
from shared.ledger.record import RunRecord
from shared.platform.port import DeploymentSummary, MLPlatform
from shared.runs import RunStore
from shared.services.aliases import crown, withdraw
from shared.states import RolloutPhase, RunState

# A canary that still has something to go back from: it serves, or it was rolled back already (a repeat).
ROLLED_BACK_FROM = frozenset({RolloutPhase.OBSERVING, RolloutPhase.PROMOTED, RolloutPhase.ROLLED_BACK})


class RollbackError(AutopilotError):
    """Nothing can be rolled back on the endpoint; the message says why."""


def _latest_canary(store: RunStore, deployments: list[DeploymentSummary]) -> tuple[RunRecord, Canary] | None:
    names = {d.name for d in deployments}
    found: list[tuple[RunRecord, Canary]] = []
    for deployment in deployments:
        record = store.get(deployment.run_id) if deployment.run_id else None
        canary = record.canary if record is not None else None
        if record is None or canary is None:
            continue
        if canary.phase in ROLLED_BACK_FROM and canary.previous_deployment in names:
            found.append((record, canary))
    earliest = datetime.min.replace(tzinfo=UTC)
    return max(found, key=lambda pair: pair[1].started_at or earliest, default=None)


def rollback_endpoint(store: RunStore, platform: MLPlatform, endpoint: str, *, by: str) -> RunRecord:
    """Traffic back on the deployment the latest canary replaced; returns that canary's run. Repeating it
    is a no-op; once the previous deployment was retired there is nothing to go back to."""
    try:
        deployments = platform.list_deployments(endpoint)
    except NotFoundError:
        raise RollbackError(f"no endpoint {endpoint!r} managed by the app") from None
    latest = _latest_canary(store, deployments)
    if latest is None:
        raise RollbackError(f"endpoint {endpoint} has no canary whose previous deployment still exists")
    record, canary = latest
    previous = canary.previous_deployment
    assert record.deployment_name
    platform.set_traffic(endpoint, {previous: 100, record.deployment_name: 0})
    now = store.clock()
    at = now.isoformat()

    def restored(r: RunRecord) -> None:
        if r.rollout is None or r.rollout.replaced_by != record.run_id:
            return
        r.rollout = replace(r.rollout, replaced_by=None, retire_after=None)
        r.notes.append(f"serving again: run {record.run_id} was rolled back by {by} at {at}")

    store.update(canary.previous_run, restored)
    serving = store.get(canary.previous_run)
    # The registry says so too: the version that serves again is the champion, the canary's nothing.
    withdraw(store, platform, record)
    if serving is not None:
        crown(store, platform, serving)
    if canary.phase == RolloutPhase.ROLLED_BACK:
        return record

    def rolled_back(r: RunRecord) -> None:
        current = r.canary
        assert r.rollout is not None and current is not None
        if current.phase == RolloutPhase.ROLLED_BACK:
            return  # another rollback was first
        # Nothing serves from it any more: the retire step deletes it.
        moved = current.moved(RolloutPhase.ROLLED_BACK, rolled_back=Actor(by, now))
        r.rollout = replace(r.rollout, canary=moved, retire_after=now)
        r.notes.append(f"rolled back by {by} at {at}: traffic is back on {previous}")
        if r.state == RunState.CANARY:
            r.errors = [FieldIssue("deployment", f"rolled back by {by}")]
            r.last_error_code = "RolledBack"

    if record.state == RunState.CANARY:
        written = store.advance(record, RunState.DEPLOY_FAILED, rolled_back)
    else:
        written = store.update(record, rolled_back)
    return written or store.get(record.run_id) or record
