"""Service: the cleanup timer. Deletes app-managed endpoints that sat idle past their policy, or are dead.

Idle means: no request since ``idle_after_minutes`` (the endpoint's ``autopilot.idle_after_minutes`` tag,
set from the config's cleanup section), counted from the last request, or from when the endpoint was
deployed if it never had one. ``autopilot.keep=true`` endpoints stay. A shared endpoint (several runs'
deployments, ``canary.py``) is judged as a whole, by the run it serves now; when it goes, every run deployed on
it ends ``deleted``. Each sweep first retires the replaced deployments past their grace period; a deployment
that carries traffic is never deleted on its own. Endpoints without the app's tags are
never listed by the platform, so never touched. Endpoints still being deployed are left to reconcile.

The check fails safe: an endpoint is deleted for idleness only on positive evidence, activity the platform
reported (``known``) with no request in the window. No metric data, or a failed metrics call, keeps it for
the next sweep. Activity is asked for many endpoints per platform call (one call per idle window), and the
deletes stop when the sweep's time budget is spent; the rest are looked at again next time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.exceptions import NotFoundError
from shared.ledger.record import RunRecord
from shared.naming import TAG_IDLE_MINUTES, TAG_KEEP, TAG_RUN_ID
from shared.platform.port import EndpointActivity, EndpointInfo, MLPlatform
from shared.runs import RunStore
from shared.services.canary import retire
from shared.services.health import note_healthy, note_unhealthy
from shared.services.sweep import Deadline, Monotonic, SweepBudget
from shared.states import RunState

log = logging.getLogger(__name__)

DEFAULT_IDLE_MINUTES = 60


@dataclass(frozen=True)
class CleanupDecision:
    endpoint: str
    run_id: str | None
    action: str  # "delete", "keep", "skip"
    reason: str
    # Every run deployed on the endpoint (a shared endpoint serves several): all end deleted with it.
    run_ids: tuple[str, ...] = ()


def _idle_minutes(tags: dict[str, str]) -> int:
    try:
        return max(1, int(tags.get(TAG_IDLE_MINUTES, DEFAULT_IDLE_MINUTES)))
    except ValueError:
        return DEFAULT_IDLE_MINUTES


def _before_metrics(
    store: RunStore, endpoint: EndpointInfo, record: RunRecord | None, now: datetime, *, dry_run: bool = False
) -> CleanupDecision | None:
    """What is decided without asking for activity; None: it depends on the endpoint's requests."""
    run = endpoint.tags.get(TAG_RUN_ID)
    if endpoint.tags.get(TAG_KEEP) == "true":
        return CleanupDecision(endpoint.name, run, "keep", "autopilot.keep is set")
    if record is not None and record.state in (RunState.DEPLOYING, RunState.CANARY):
        return CleanupDecision(endpoint.name, run, "skip", "still deploying (reconcile owns it)")
    # --- [health rule] (shared/services/health.py): delete only after a sustained failure, tracked on the run.
    # An endpoint with no run in the ledger (an orphan) is judged by idleness alone.
    if endpoint.healthy is False and record is not None:
        verdict = note_unhealthy(store, record, now, dry_run=dry_run)
        return CleanupDecision(endpoint.name, run, "delete" if verdict.delete else "skip", verdict.reason)
    if endpoint.healthy is True and record is not None and not dry_run:
        note_healthy(store, record)
    # --- [/health rule]
    return None


def decide_idle(
    endpoint: EndpointInfo, record: RunRecord | None, activity: EndpointActivity, now: datetime
) -> CleanupDecision:
    """Delete only on known activity with no request in the window, for an endpoint older than the window."""
    run = endpoint.tags.get(TAG_RUN_ID)
    idle = timedelta(minutes=_idle_minutes(endpoint.tags))
    minutes = int(idle.total_seconds() // 60)
    if activity.last_request_at is not None and activity.last_request_at >= now - idle:
        return CleanupDecision(endpoint.name, run, "skip", f"last request {activity.last_request_at.isoformat()}")
    started = endpoint.created_at
    if record is not None and RunState.DEPLOYED.value in record.timeline:
        started = datetime.fromisoformat(record.timeline[RunState.DEPLOYED.value])
    if started is not None and started > now - idle:
        return CleanupDecision(endpoint.name, run, "skip", f"deployed {started.isoformat()}, not idle long enough")
    if not activity.known:
        return CleanupDecision(
            endpoint.name, run, "skip", f"no request metrics for the last {minutes} min: idleness unknown, kept"
        )
    return CleanupDecision(endpoint.name, run, "delete", f"idle: no request in the last {minutes} min")


def decide(
    store: RunStore, platform: MLPlatform, endpoint: EndpointInfo, now: datetime, *, dry_run: bool = False
) -> CleanupDecision:
    """One endpoint on its own (the CLI's dry run of one); the sweep batches the activity calls."""
    run = endpoint.tags.get(TAG_RUN_ID)
    record = serving_run(runs_on(store, platform, endpoint), run)
    early = _before_metrics(store, endpoint, record, now, dry_run=dry_run)
    if early is not None:
        return early
    since = now - timedelta(minutes=_idle_minutes(endpoint.tags))
    return decide_idle(endpoint, record, platform.endpoint_activity(endpoint.name, since=since), now)


def runs_on(store: RunStore, platform: MLPlatform, endpoint: EndpointInfo) -> list[RunRecord]:
    """The runs with a deployment on the endpoint (a shared endpoint has several) and the run that made it."""
    ids = [endpoint.tags.get(TAG_RUN_ID)]
    with contextlib.suppress(NotFoundError):
        ids += [d.run_id for d in platform.list_deployments(endpoint.name)]
    seen: dict[str, RunRecord] = {}
    for run in ids:
        if run and run not in seen and (record := store.get(run)) is not None:
            seen[run] = record
    return list(seen.values())


def serving_run(records: list[RunRecord], creator: str | None) -> RunRecord | None:
    """The run the endpoint is judged by: one still rolling out (reconcile owns the endpoint then), else the
    run deployed last, else the run that made it."""
    rolling = [r for r in records if r.state in (RunState.DEPLOYING, RunState.CANARY)]
    if rolling:
        return rolling[0]
    deployed = [r for r in records if r.state == RunState.DEPLOYED]
    if deployed:
        return max(deployed, key=lambda r: r.timeline.get(RunState.DEPLOYED.value, ""))
    return next((r for r in records if r.run_id == creator), None)


def _decisions(store: RunStore, platform: MLPlatform, now: datetime, dry_run: bool) -> list[CleanupDecision]:
    decisions: list[CleanupDecision] = []
    deployed: dict[str, tuple[str, ...]] = {}
    waiting: dict[int, list[tuple[EndpointInfo, RunRecord | None]]] = defaultdict(list)
    for endpoint in platform.list_endpoints():
        run = endpoint.tags.get(TAG_RUN_ID)
        try:
            if not dry_run:
                # --- [canary] (shared/services/canary.py): replaced deployments past their grace period go.
                retire(store, platform, endpoint.name, now)
            records = runs_on(store, platform, endpoint)
            record = serving_run(records, run)
        except Exception as exc:
            log.warning("endpoint %s: run %s not read: %s", endpoint.name, run, exc)
            decisions.append(CleanupDecision(endpoint.name, run, "skip", f"error: {exc}"))
            continue
        deployed[endpoint.name] = tuple(r.run_id for r in records if r.state == RunState.DEPLOYED)
        early = _before_metrics(store, endpoint, record, now, dry_run=dry_run)
        if early is not None:
            decisions.append(early)
        else:
            waiting[_idle_minutes(endpoint.tags)].append((endpoint, record))
    for minutes, group in waiting.items():
        names = [endpoint.name for endpoint, _ in group]
        try:
            activity = platform.endpoints_activity(names, since=now - timedelta(minutes=minutes))
        except Exception as exc:  # no answer is no evidence: keep them all for the next sweep
            log.warning("idle check of %d endpoints failed: %s", len(names), exc)
            decisions += [CleanupDecision(e.name, e.tags.get(TAG_RUN_ID), "skip", f"error: {exc}") for e, _ in group]
            continue
        for endpoint, record in group:
            found = activity.get(endpoint.name) or EndpointActivity(None, 0, known=False)
            decisions.append(decide_idle(endpoint, record, found, now))
    return [dataclasses.replace(d, run_ids=deployed.get(d.endpoint, ())) for d in decisions]


def cleanup(
    store: RunStore,
    platform: MLPlatform,
    *,
    dry_run: bool = False,
    budget: SweepBudget | None = None,
    monotonic: Monotonic = time.monotonic,
) -> list[CleanupDecision]:
    """One sweep over the app's endpoints."""
    deadline = Deadline((budget or SweepBudget()).seconds, monotonic)
    now = store.clock()
    decisions = _decisions(store, platform, now, dry_run)
    done: list[CleanupDecision] = []
    for decision in decisions:
        if decision.action != "delete" or dry_run:
            done.append(decision)
            continue
        if deadline.expired:
            done.append(CleanupDecision(decision.endpoint, decision.run_id, "skip", "budget spent: next sweep"))
            continue
        log.info("endpoint %s: deleting (%s)", decision.endpoint, decision.reason)
        try:
            platform.begin_delete_endpoint(decision.endpoint)
        except Exception as exc:
            log.warning("endpoint %s: delete failed: %s", decision.endpoint, exc)
            done.append(CleanupDecision(decision.endpoint, decision.run_id, "skip", f"error: {exc}"))
            continue
        done.append(decision)
        for run_id in decision.run_ids or ((decision.run_id,) if decision.run_id else ()):
            reason = decision.reason

            def deleted(r: RunRecord, reason: str = reason) -> None:
                r.notes.append(f"endpoint deleted: {reason}")
                if reason.startswith("unhealthy"):
                    r.last_error_code = "EndpointUnhealthy"
                    r.errors = [{"path": "endpoint", "message": f"deleted: {reason}"}]

            store.advance(run_id, RunState.DELETED, deleted)
    return done
