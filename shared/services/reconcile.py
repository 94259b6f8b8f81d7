"""Service: the reconcile timer. Finishes what events did not: lost job events, registrations, deployments.

- submitted/running: ask the platform for the job; an ended job is handled as if its event had come;
- completed: register; registered: start the deployment;
- deploying: Succeeded -> traffic 100% (a canary on a shared endpoint, ``canary.py``: its share), smoke test ->
  deployed (the canary: canary); Failed, a failed smoke test or a deployment past its deadline -> delete what
  was created -> deploy_failed with the platform's error code;
- canary past its window -> promoted (deployed) or rolled back (deploy_failed);
- deployed, when the platform no longer has its endpoint -> deleted with the reason (``vanished.py``: one
  endpoint listing per invocation, then a read of each run whose endpoint was not listed).
A run that reaches ``deployed`` is handed to the ``WHEN_DEPLOYED`` hooks (the supersede policy, one endpoint per
config path: ``supersede.py``).
One run's failure is logged and does not stop the others.

One invocation runs the steps of ``SWEEPS`` in order, sharing one time budget (``SweepBudget``): each step
takes a ``SweepContext`` and returns its outcomes, and is skipped once the budget is spent. The runs step
goes through the ledger's active index with bounded concurrency in rotating order (``sweep.py``), so its cost
follows the live runs only, and a run not reached is first in line next time. Another sweep (say, runs stuck
in ``received``, or platform resources without a run) is a function of the same shape added to ``SWEEPS``.
The orphan step (``orphans.py``) is one: app-tagged jobs, model versions and endpoints with no ledger row.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared import telemetry
from shared.exceptions import AutopilotError, NotFoundError, TransientPlatformError
from shared.ledger.parts import SmokeTest
from shared.ledger.record import RunRecord
from shared.platform.port import DeploymentInfo, DeploymentState, MLPlatform
from shared.runs import RunStore
from shared.scoring import answer_text
from shared.services.canary import endpoint_gone, fail_canary, observe, start_observing
from shared.services.lifecycle import apply_job_status, deploy, deploy_request, register
from shared.services.orphans import DEFAULT_ORPHAN_GRACE, Orphan, sweep_orphans
from shared.services.step import Outcome, failure, guarded
from shared.services.stranded import DEFAULT_RECEIVED_DEADLINE, fail_if_stranded
from shared.services.supersede import supersede_older
from shared.services.sweep import Deadline, Monotonic, SweepBudget, SweepContext, sweep_active
from shared.services.vanished import Listing, end_if_gone
from shared.states import ACTIVE, RunState

__all__ = ["SWEEPS", "WHEN_DEPLOYED", "ReconcileOutcome", "ReconcileReport", "SweepContext", "reconcile"]

log = logging.getLogger(__name__)

# What the runs step moves forward: every state in which the platform may still change under the run (a
# ``received`` run is submit's, unless it is stranded past the deadline).
RECONCILED = ACTIVE
SMOKE_ANSWER_CHARS = 4000  # what the run keeps of the smoke test's answer


@dataclass(frozen=True)
class ReconcileOutcome:
    run_id: str
    before: str
    after: str
    error: str | None = None


@dataclass
class ReconcileReport:
    """What one invocation did: per-run outcomes, and the runs left for the next one."""

    outcomes: list[ReconcileOutcome] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    skipped_steps: list[str] = field(default_factory=list)  # not started: the budget was spent
    orphans: list[Orphan] = field(default_factory=list)  # orphans first seen or acted on by this invocation

    def __iter__(self) -> Iterator[ReconcileOutcome]:
        return iter(self.outcomes)


SweepStep = Callable[[SweepContext, ReconcileReport], None]
# Told of every run a reconcile step moved to ``deployed``, in order (a policy that acts on the other runs).
DeployedHook = Callable[[RunStore, MLPlatform, RunRecord], object]
WHEN_DEPLOYED: tuple[DeployedHook, ...] = (supersede_older,)


def _delete_and_fail(platform: MLPlatform, record: RunRecord, message: str, code: str, now: datetime) -> Outcome:
    assert record.endpoint_name
    if record.canary is not None:
        # On another run's endpoint: only this run's deployment goes; the endpoint keeps serving.
        return fail_canary(platform, record, message, code, now)
    with contextlib.suppress(NotFoundError):
        platform.begin_delete_endpoint(record.endpoint_name)
    return Outcome(RunState.DEPLOY_FAILED, failure(message, code, "deployment"))


def smoke_tested(platform: MLPlatform, record: RunRecord, endpoint: str, now: datetime) -> SmokeTest | None:
    """The run's smoke request sent to its new deployment, with the answer; None when it has none. A failed
    request raises (``AutopilotError``)."""
    smoke = record.smoke_test
    if smoke is None:
        return None
    answer = platform.invoke(endpoint, record.deployment_name, smoke.request)
    return replace(smoke, answer=answer_text(answer)[:SMOKE_ANSWER_CHARS], at=now)


def go_live(
    platform: MLPlatform, record: RunRecord, info: DeploymentInfo, now: datetime, deadline: datetime
) -> Outcome | None:
    """The deployment succeeded: its traffic (all of it, or a canary's share), then the smoke test; the run is
    deployed, or a canary under observation. A smoke request that fails in a way that may pass (throttling, a
    gateway's 503) is tried again by the next look until ``deadline``, the deployment's own; only then, or on
    an answer that says the deployment is broken, is the deployment removed (None: stay, look again)."""
    assert record.endpoint_name and record.deployment_name
    canary = record.canary
    endpoint = canary.endpoint if canary is not None else record.endpoint_name
    traffic = canary.traffic(record.deployment_name) if canary is not None else {record.deployment_name: 100}
    platform.set_traffic(endpoint, traffic)
    try:
        smoke = smoke_tested(platform, record, endpoint, now)
    except TransientPlatformError as exc:
        if now < deadline:
            log.warning("run %s: smoke test not answered (%s); next look, until %s", record.run_id, exc, deadline)
            return None
        return _delete_and_fail(platform, record, f"smoke test failed until {deadline}: {exc}", "SmokeTestFailed", now)
    except AutopilotError as exc:
        return _delete_and_fail(platform, record, f"smoke test failed: {exc}", "SmokeTestFailed", now)
    if canary is not None:
        return start_observing(record, info.scoring_uri, smoke, now)

    def fill(x: RunRecord) -> None:
        x.scoring_uri = info.scoring_uri
        x.smoke_test = smoke

    return Outcome(RunState.DEPLOYED, fill)


def finish_deployment(ctx: SweepContext, record: RunRecord) -> RunRecord | None:
    """One look at a deploying run; never waits."""
    platform, now = ctx.platform, ctx.now

    def act(r: RunRecord) -> Outcome | None:
        assert r.endpoint_name and r.deployment_name
        info = platform.get_deployment(r.endpoint_name, r.deployment_name)
        if info.state == DeploymentState.FAILED:
            message = info.error_message or "the deployment failed"
            return _delete_and_fail(platform, r, message, info.error_code or "DeploymentFailed", now)
        if info.state == DeploymentState.MISSING:
            # The create call was lost (crash before the platform saw it): start it again, idempotently.
            if r.config is None or r.model_name is None or r.model_version is None:
                return _delete_and_fail(platform, r, "deployment disappeared", "ResourceNotFound", now)
            model = platform.get_model(r.model_name, r.model_version)
            try:
                platform.begin_deploy(deploy_request(r, r.config, model))
            except NotFoundError:
                if r.canary is None:
                    raise
                return endpoint_gone(r, now)  # the endpoint it joined is gone: nothing to add a deployment to
            return None
        started = datetime.fromisoformat(r.timeline.get(RunState.DEPLOYING.value, now.isoformat()))
        if info.state != DeploymentState.SUCCEEDED:
            if now - started > ctx.deploy_timeout:
                minutes = int(ctx.deploy_timeout.total_seconds() // 60)
                message = f"deployment still {info.state.value} after {minutes} minutes"
                return _delete_and_fail(platform, r, message, "DeploymentTimeout", now)
            return None
        return go_live(platform, r, info, now, started + ctx.deploy_timeout)

    return guarded(ctx.store, record, RunState.DEPLOYING, act)


def _step(ctx: SweepContext, record: RunRecord) -> RunRecord | None:
    """One move of the run; returns the record it wrote, or None when it stays where it is."""
    store, platform = ctx.store, ctx.platform
    if record.state == RunState.RECEIVED:
        # A submit that never finished (shared/services/stranded.py): failed with a reason past the deadline.
        return fail_if_stranded(store, record, ctx.now, ctx.received_deadline)
    if record.state in (RunState.SUBMITTED, RunState.RUNNING) and record.job_name:
        return apply_job_status(store, platform, record, platform.get_job(record.job_name))
    if record.state == RunState.COMPLETED:
        return register(store, platform, record)
    if record.state == RunState.REGISTERED:
        return deploy(store, platform, record)
    if record.state == RunState.DEPLOYING:
        return finish_deployment(ctx, record)
    if record.state == RunState.CANARY:
        return observe(store, platform, record, ctx.now)
    if record.state == RunState.DEPLOYED:
        return end_if_gone(store, platform, record)  # handed here only when its endpoint was not listed
    return None


def reconcile_run(ctx: SweepContext, record: RunRecord) -> RunRecord:
    """Step the run forward as far as it can go now (a finished job goes on to register and deploy)."""
    for _ in range(len(RunState)):
        after = _step(ctx, record)
        if after is None or after.state == record.state:
            return after or record
        if after.state == RunState.DEPLOYED:
            for hook in WHEN_DEPLOYED:
                hook(ctx.store, ctx.platform, after)
            return after  # deployed: nothing more to do for it in this look
        record = after
    return record


def sweep_runs(ctx: SweepContext, report: ReconcileReport) -> None:
    """The runs step: every active run the reconcile moves, within the shared budget."""

    def handle(record: RunRecord) -> ReconcileOutcome:
        try:
            after = reconcile_run(ctx, record)
        except Exception as exc:  # one bad run must not stop the sweep
            error = f"{type(exc).__name__}: {exc}"
            log.warning("run %s: reconcile failed: %s", record.run_id, error)
            return ReconcileOutcome(record.run_id, record.state.value, record.state.value, error)
        if after.state != record.state:
            log.info("reconcile: run %s %s -> %s", record.run_id, record.state.value, after.state.value)
        return ReconcileOutcome(record.run_id, record.state.value, after.state.value)

    listing = Listing(ctx.platform)  # deployed runs are handled only when their endpoint is not listed
    swept = sweep_active(
        ctx.store,
        handle,
        wants=lambda r: r.state in RECONCILED or listing.lacks(r),
        deadline=ctx.deadline,
        concurrency=ctx.concurrency,
    )
    report.outcomes.extend(swept.results)
    for run_id in swept.failed:
        with telemetry.run_scope(run_id=run_id, span=None):
            log.info("reconcile: run %s: storage failed; next sweep", run_id)
    report.outcomes.extend(ReconcileOutcome(r, "?", "?", "storage failed; next sweep") for r in swept.failed)
    report.left.extend(swept.left)


SWEEPS: tuple[SweepStep, ...] = (sweep_runs, sweep_orphans)


def reconcile(
    store: RunStore,
    platform: MLPlatform,
    *,
    deploy_timeout: timedelta,
    received_deadline: timedelta = DEFAULT_RECEIVED_DEADLINE,
    orphan_grace: timedelta = DEFAULT_ORPHAN_GRACE,
    budget: SweepBudget | None = None,
    monotonic: Monotonic = time.monotonic,
    sweeps: Sequence[SweepStep] = SWEEPS,
) -> ReconcileReport:
    """One invocation: each sweep step in turn while the budget lasts."""
    budget = budget or SweepBudget(concurrency=1)
    ctx = SweepContext(
        store=store,
        platform=platform,
        now=store.clock(),
        deadline=Deadline(budget.seconds, monotonic),
        concurrency=budget.concurrency,
        deploy_timeout=deploy_timeout,
        received_deadline=received_deadline,
        orphan_grace=orphan_grace,
    )
    report = ReconcileReport()
    for sweep in sweeps:
        name = getattr(sweep, "__name__", repr(sweep))
        if ctx.deadline.expired:
            report.skipped_steps.append(name)
            continue
        try:
            sweep(ctx, report)
        except Exception:  # one step's failure (say, storage throttling) must not stop the others
            log.exception("reconcile: sweep step %s failed", name)
    if report.left or report.skipped_steps:
        log.info(
            "reconcile: budget of %ss spent; %d runs and steps %s left for the next invocation",
            budget.seconds,
            len(report.left),
            report.skipped_steps,
        )
    return report
