"""Service: the cleanup timer. Deletes app-managed endpoints that sat idle past their policy, or are dead.

Idle means: no request since ``idle_after_minutes`` (the endpoint's ``autopilot_idle_after_minutes`` tag,
set from the config's cleanup section), counted from the last request, or from when the endpoint was
deployed if it never had one. A shared endpoint (several runs' deployments, ``canary.py``) is judged as a
whole, by the run it serves now; when it goes, every run deployed on it ends ``deleted``. Endpoints without the
app's tags are never listed by the platform, so never touched.

The sweep calls its hooks for each endpoint, in the order ``CHORES`` then ``RULES`` list them: first the
chores (the canary's retire step: replaced deployments past their grace period go; a deployment that
carries traffic is never deleted on its own), then the rules, the first to decide wins: ``autopilot_keep=true``
keeps it, one still being deployed is left to reconcile, an unhealthy one is deleted only once the failure is
sustained (``health.py``). An endpoint no rule decides is judged by its idleness. Each run is read once per
sweep (``SweepRuns``), however many of these look at it.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared import telemetry
from shared.costs import PriceTable, PriceTableError, endpoint_cost_per_day
from shared.exceptions import FieldIssue, NotFoundError
from shared.ledger.record import RunRecord
from shared.naming import TAG_IDLE_MINUTES, TAG_KEEP, TAG_RUN_ID
from shared.platform.port import EndpointActivity, EndpointInfo, MLPlatform
from shared.runs import RunStore
from shared.services.canary import retire
from shared.services.health import note_healthy, note_unhealthy
from shared.services.sweep import Deadline, Monotonic, SweepBudget, SweepRuns
from shared.states import RunState

log = logging.getLogger(__name__)

DEFAULT_IDLE_MINUTES = 60
OWNED_BY_RECONCILE = (RunState.DEPLOYING, RunState.CANARY)  # rolling out: the endpoint is reconcile's


@dataclass(frozen=True)
class CleanupDecision:
    endpoint: str
    run_id: str | None
    action: str  # "delete", "keep", "skip"
    reason: str
    # Every run deployed on the endpoint (a shared endpoint serves several): all end deleted with it.
    run_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CleanupPass:
    """One sweep (or one dry look): the runs it read, the platform, its time, and whether it may change things."""

    runs: SweepRuns
    platform: MLPlatform
    now: datetime
    dry_run: bool = False


@dataclass(frozen=True)
class EndpointLook:
    """One endpoint as the rules see it: the runs deployed on it (and the one that made it), and the run it is
    judged by (``serving_run``)."""

    endpoint: EndpointInfo
    records: tuple[RunRecord, ...]
    serving: RunRecord | None

    def decision(self, action: str, reason: str) -> CleanupDecision:
        return CleanupDecision(self.endpoint.name, self.endpoint.tags.get(TAG_RUN_ID), action, reason)


Chore = Callable[[CleanupPass, EndpointInfo], object]
Rule = Callable[[CleanupPass, EndpointLook], CleanupDecision | None]


def retire_replaced(sweep: CleanupPass, endpoint: EndpointInfo) -> object:
    """The canary's retire step (``canary.retire``): replaced deployments past their grace period go."""
    return retire(sweep.runs, sweep.platform, endpoint.name, sweep.now)


def keep_rule(sweep: CleanupPass, look: EndpointLook) -> CleanupDecision | None:
    if look.endpoint.tags.get(TAG_KEEP) == "true":
        return look.decision("keep", "autopilot_keep is set")
    return None


def rolling_out_rule(sweep: CleanupPass, look: EndpointLook) -> CleanupDecision | None:
    if look.serving is not None and look.serving.state in OWNED_BY_RECONCILE:
        return look.decision("skip", "still deploying (reconcile owns it)")
    return None


def health_rule(sweep: CleanupPass, look: EndpointLook) -> CleanupDecision | None:
    """Delete only after a sustained failure, tracked on the run (``health.py``). An endpoint with no run in the
    ledger (an orphan) is judged by idleness alone."""
    record, healthy = look.serving, look.endpoint.healthy
    if record is None:
        return None
    if healthy is False:
        verdict = note_unhealthy(sweep.runs, record, sweep.now, dry_run=sweep.dry_run)
        return look.decision("delete" if verdict.delete else "skip", verdict.reason)
    if healthy is True and not sweep.dry_run:
        note_healthy(sweep.runs, record)
    return None


# The hooks the sweep calls for each endpoint, registered here in the order they run. Chores first, in a real
# sweep only (never in a dry run, nor for one endpoint judged alone); then the rules: the first decision wins.
CHORES: tuple[Chore, ...] = (retire_replaced,)
RULES: tuple[Rule, ...] = (keep_rule, rolling_out_rule, health_rule)


def _idle_minutes(tags: dict[str, str]) -> int:
    try:
        return max(1, int(tags.get(TAG_IDLE_MINUTES, DEFAULT_IDLE_MINUTES)))
    except ValueError:
        return DEFAULT_IDLE_MINUTES


def judge(sweep: CleanupPass, look: EndpointLook) -> CleanupDecision | None:
    """What the rules decide without asking for activity; None: it depends on the endpoint's requests."""
    for rule in RULES:
        decision = rule(sweep, look)
        if decision is not None:
            return decision
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


def idle_deadline(endpoint: EndpointInfo, record: RunRecord | None, activity: EndpointActivity) -> datetime | None:
    """When ``decide_idle`` would first delete the endpoint if no request came: its last request (or its
    deployment) plus the idle window. None when neither is known."""
    started = endpoint.created_at
    if record is not None and RunState.DEPLOYED.value in record.timeline:
        started = datetime.fromisoformat(record.timeline[RunState.DEPLOYED.value])
    known = [t for t in (activity.last_request_at, started) if t is not None]
    return max(known) + timedelta(minutes=_idle_minutes(endpoint.tags)) if known else None


def look_at(sweep: CleanupPass, endpoint: EndpointInfo) -> EndpointLook:
    """The endpoint with the runs that have a deployment on it (a shared endpoint has several) and its maker."""
    ids = [endpoint.tags.get(TAG_RUN_ID)]
    with contextlib.suppress(NotFoundError):
        ids += [d.run_id for d in sweep.platform.list_deployments(endpoint.name)]
    seen: dict[str, RunRecord] = {}
    for run in ids:
        if run and run not in seen and (record := sweep.runs.get(run)) is not None:
            seen[run] = record
    records = tuple(seen.values())
    return EndpointLook(endpoint, records, serving_run(records, endpoint.tags.get(TAG_RUN_ID)))


def serving_run(records: tuple[RunRecord, ...], creator: str | None) -> RunRecord | None:
    """The run the endpoint is judged by: one still rolling out (reconcile owns the endpoint then), else the
    run deployed last, else the run that made it."""
    rolling = [r for r in records if r.state in OWNED_BY_RECONCILE]
    if rolling:
        return rolling[0]
    deployed = [r for r in records if r.state == RunState.DEPLOYED]
    if deployed:
        return max(deployed, key=lambda r: r.timeline.get(RunState.DEPLOYED.value, ""))
    return next((r for r in records if r.run_id == creator), None)


def decide(
    store: RunStore, platform: MLPlatform, endpoint: EndpointInfo, now: datetime, *, dry_run: bool = False
) -> CleanupDecision:
    """One endpoint on its own (the orphan sweep's check); the sweep batches the activity calls."""
    sweep = CleanupPass(SweepRuns(store), platform, now, dry_run)
    look = look_at(sweep, endpoint)
    early = judge(sweep, look)
    if early is not None:
        return early
    since = now - timedelta(minutes=_idle_minutes(endpoint.tags))
    return decide_idle(endpoint, look.serving, platform.endpoint_activity(endpoint.name, since=since), now)


@dataclass(frozen=True)
class EndpointCheck:
    """One endpoint's cleanup decision, acted on, and when it may next change (its idle deadline; None: no
    known time). ``decision`` is None when the platform does not list the endpoint."""

    decision: CleanupDecision | None
    next_look: datetime | None = None


def check_endpoint(store: RunStore, platform: MLPlatform, endpoint_name: str, now: datetime) -> EndpointCheck:
    """The sweep's decision for one endpoint, then its delete when decided (a follow-up at the idle deadline:
    shared/services/followup.py). The rules and the idle check are the sweep's own; the chores stay the sweep's."""
    endpoint = next((e for e in platform.list_endpoints() if e.name == endpoint_name), None)
    if endpoint is None:
        return EndpointCheck(None)
    sweep = CleanupPass(SweepRuns(store), platform, now)
    look = look_at(sweep, endpoint)
    decision, due = judge(sweep, look), None
    if decision is None:
        minutes = _idle_minutes(endpoint.tags)
        activity = platform.endpoints_activity([endpoint.name], since=now - timedelta(minutes=minutes)).get(
            endpoint.name
        ) or EndpointActivity(None, 0, known=False)
        decision = decide_idle(endpoint, look.serving, activity, now)
        due = idle_deadline(endpoint, look.serving, activity) if activity.known else None
    deployed = tuple(r.run_id for r in look.records if r.state == RunState.DEPLOYED)
    decision = dataclasses.replace(decision, run_ids=deployed)
    if decision.action == "delete":
        decision = _delete(sweep, decision)
    return EndpointCheck(decision, due)


def _decisions(sweep: CleanupPass) -> list[CleanupDecision]:
    decisions: list[CleanupDecision] = []
    deployed: dict[str, tuple[str, ...]] = {}
    waiting: dict[int, list[tuple[EndpointInfo, RunRecord | None]]] = defaultdict(list)
    for endpoint in sweep.platform.list_endpoints():
        try:
            for chore in () if sweep.dry_run else CHORES:
                chore(sweep, endpoint)
            look = look_at(sweep, endpoint)
        except Exception as exc:
            run = endpoint.tags.get(TAG_RUN_ID)
            log.warning("endpoint %s: run %s not read: %s", endpoint.name, run, exc)
            decisions.append(CleanupDecision(endpoint.name, run, "skip", f"error: {exc}"))
            continue
        deployed[endpoint.name] = tuple(r.run_id for r in look.records if r.state == RunState.DEPLOYED)
        early = judge(sweep, look)
        if early is not None:
            decisions.append(early)
        else:
            waiting[_idle_minutes(endpoint.tags)].append((endpoint, look.serving))
    for minutes, group in waiting.items():
        names = [endpoint.name for endpoint, _ in group]
        try:
            activity = sweep.platform.endpoints_activity(names, since=sweep.now - timedelta(minutes=minutes))
        except Exception as exc:  # no answer is no evidence: keep them all for the next sweep
            log.warning("idle check of %d endpoints failed: %s", len(names), exc)
            decisions += [CleanupDecision(e.name, e.tags.get(TAG_RUN_ID), "skip", f"error: {exc}") for e, _ in group]
            continue
        for endpoint, record in group:
            found = activity.get(endpoint.name) or EndpointActivity(None, 0, known=False)
            decisions.append(decide_idle(endpoint, record, found, sweep.now))
    return [dataclasses.replace(d, run_ids=deployed.get(d.endpoint, ())) for d in decisions]


def _delete(sweep: CleanupPass, decision: CleanupDecision) -> CleanupDecision:
    """Delete the endpoint; every run deployed on it ends ``deleted`` with the reason."""
    record = sweep.runs.get(decision.run_id) if decision.run_id else None
    with telemetry.run_scope(
        record, run_id=decision.run_id, endpoint=decision.endpoint, span="autopilot.cleanup.delete"
    ):
        done = _delete_endpoint(sweep, decision)
        if done.action == "delete":
            _tell_saving(done, record)
        return done


def _tell_saving(decision: CleanupDecision, record: RunRecord | None) -> None:
    """The cleanup's span event: what the deleted endpoint would have cost per day (shipped price table)."""
    sku = record.inference_instance_type if record else None
    instances = record.config.deployment.instance_count if record and record.config else None
    per_day = None
    try:
        price = PriceTable.load().get(sku)
    except PriceTableError:
        price = None
    if price is not None and instances:
        per_day = endpoint_cost_per_day(price, instances)
    telemetry.endpoint_cleaned(
        decision.endpoint, decision.action, decision.reason, instance_type=sku, instances=instances, usd_per_day=per_day
    )


def _delete_endpoint(sweep: CleanupPass, decision: CleanupDecision) -> CleanupDecision:
    log.info("endpoint %s: deleting (%s)", decision.endpoint, decision.reason)
    try:
        sweep.platform.begin_delete_endpoint(decision.endpoint)
    except Exception as exc:
        log.warning("endpoint %s: delete failed: %s", decision.endpoint, exc)
        return CleanupDecision(decision.endpoint, decision.run_id, "skip", f"error: {exc}")
    reason = decision.reason

    def deleted(r: RunRecord) -> None:
        r.notes.append(f"endpoint deleted: {reason}")
        if reason.startswith("unhealthy"):
            r.last_error_code = "EndpointUnhealthy"
            r.errors = [FieldIssue("endpoint", f"deleted: {reason}")]

    for run_id in decision.run_ids or ((decision.run_id,) if decision.run_id else ()):
        sweep.runs.advance(run_id, RunState.DELETED, deleted)
    return decision


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
    sweep = CleanupPass(SweepRuns(store), platform, store.clock(), dry_run)
    done: list[CleanupDecision] = []
    for decision in _decisions(sweep):
        if decision.action != "delete" or dry_run:
            done.append(decision)
        elif deadline.expired:
            done.append(CleanupDecision(decision.endpoint, decision.run_id, "skip", "budget spent: next sweep"))
        else:
            done.append(_delete(sweep, decision))
        d = done[-1]
        record = sweep.runs.get(d.run_id) if d.run_id else None
        with telemetry.run_scope(record, run_id=d.run_id, endpoint=d.endpoint, span=None):
            log.info("cleanup: endpoint %s: %s (%s)", d.endpoint, d.action, d.reason)
    return done
