"""Service: the cleanup timer. Deletes app-managed endpoints that sat idle past their policy, or stayed
unhealthy through several probes over minutes (shared/services/health.py); one failed probe deletes nothing.

Idle means: no request since ``idle_after_minutes`` (the endpoint's ``autopilot.idle_after_minutes`` tag,
set from the config's cleanup section), counted from the last request, or from when the endpoint was
deployed if it never had one. ``autopilot.keep=true`` endpoints stay. Endpoints without the app's tags are
never listed by the platform, so never touched. Endpoints still being deployed are left to reconcile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.ledger.record import RunRecord
from shared.naming import TAG_IDLE_MINUTES, TAG_KEEP, TAG_RUN_ID
from shared.platform.port import EndpointInfo, MLPlatform
from shared.runs import RunStore
from shared.services.health import note_healthy, note_unhealthy
from shared.states import RunState

log = logging.getLogger(__name__)

DEFAULT_IDLE_MINUTES = 60


@dataclass(frozen=True)
class CleanupDecision:
    endpoint: str
    run_id: str | None
    action: str  # "delete", "keep", "skip"
    reason: str


def _idle_minutes(tags: dict[str, str]) -> int:
    try:
        return max(1, int(tags.get(TAG_IDLE_MINUTES, DEFAULT_IDLE_MINUTES)))
    except ValueError:
        return DEFAULT_IDLE_MINUTES


def decide(
    store: RunStore, platform: MLPlatform, endpoint: EndpointInfo, now: datetime, *, dry_run: bool = False
) -> CleanupDecision:
    run = endpoint.tags.get(TAG_RUN_ID)
    record = store.get(run) if run else None
    if endpoint.tags.get(TAG_KEEP) == "true":
        return CleanupDecision(endpoint.name, run, "keep", "autopilot.keep is set")
    if record is not None and record.state == RunState.DEPLOYING:
        return CleanupDecision(endpoint.name, run, "skip", "still deploying (reconcile owns it)")
    # --- [health rule] (shared/services/health.py): delete only after a sustained failure, tracked on the run.
    # An endpoint with no run in the ledger (an orphan) is judged by idleness alone, below.
    if endpoint.healthy is False and record is not None:
        verdict = note_unhealthy(store, record, now, dry_run=dry_run)
        return CleanupDecision(endpoint.name, run, "delete" if verdict.delete else "skip", verdict.reason)
    elif endpoint.healthy is True and record is not None and not dry_run:
        note_healthy(store, record)
    # --- [/health rule]
    idle = timedelta(minutes=_idle_minutes(endpoint.tags))
    activity = platform.endpoint_activity(endpoint.name, since=now - idle)
    started = endpoint.created_at
    if record is not None and RunState.DEPLOYED.value in record.timeline:
        started = datetime.fromisoformat(record.timeline[RunState.DEPLOYED.value])
    if activity.last_request_at is not None and activity.last_request_at >= now - idle:
        return CleanupDecision(endpoint.name, run, "skip", f"last request {activity.last_request_at.isoformat()}")
    if started is not None and started > now - idle:
        return CleanupDecision(endpoint.name, run, "skip", f"deployed {started.isoformat()}, not idle long enough")
    minutes = int(idle.total_seconds() // 60)
    return CleanupDecision(endpoint.name, run, "delete", f"idle: no request in the last {minutes} min")


def cleanup(store: RunStore, platform: MLPlatform, *, dry_run: bool = False) -> list[CleanupDecision]:
    """One sweep over the app's endpoints."""
    now = store.clock()
    decisions = []
    for endpoint in platform.list_endpoints():
        try:
            decision = decide(store, platform, endpoint, now, dry_run=dry_run)
        except Exception as exc:
            log.warning("endpoint %s: idle check failed: %s", endpoint.name, exc)
            decisions.append(CleanupDecision(endpoint.name, endpoint.tags.get(TAG_RUN_ID), "skip", f"error: {exc}"))
            continue
        decisions.append(decision)
        if decision.action != "delete" or dry_run:
            continue
        log.info("endpoint %s: deleting (%s)", endpoint.name, decision.reason)
        platform.begin_delete_endpoint(endpoint.name)
        if decision.run_id:
            reason = decision.reason

            def deleted(r: RunRecord, reason: str = reason) -> None:
                r.notes.append(f"endpoint deleted: {reason}")
                if reason.startswith("unhealthy"):
                    r.last_error_code = "EndpointUnhealthy"
                    r.errors = [{"path": "endpoint", "message": f"deleted: {reason}"}]

            store.advance(decision.run_id, RunState.DELETED, deleted)
    return decisions
