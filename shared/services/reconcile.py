"""Service: the reconcile timer. Finishes what events did not: lost job events, registrations, deployments.

- submitted/running: ask the platform for the job; an ended job is handled as if its event had come;
- completed: register; registered: start the deployment;
- deploying: Succeeded -> traffic 100%, smoke test -> deployed; Failed, a failed smoke test or a deployment
  past its deadline -> delete what was created -> deploy_failed with the platform's error code;
- a canary on a shared endpoint (``canary.py``): Succeeded -> its share of traffic, smoke test -> canary;
  canary past its window -> promoted (deployed) or rolled back (deploy_failed).
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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.exceptions import AutopilotError, NotFoundError
from shared.ledger.record import RunRecord
from shared.platform.port import DeploymentState, MLPlatform
from shared.runs import RunStore
from shared.scoring import answer_text
from shared.services.canary import fail_canary, is_canary, observe, start_canary
from shared.services.lifecycle import apply_job_status, deploy, deploy_request, register
from shared.services.orphans import DEFAULT_ORPHAN_GRACE, Orphan, sweep_orphans
from shared.services.step import Outcome, failure, guarded
from shared.services.stranded import DEFAULT_RECEIVED_DEADLINE, fail_if_stranded
from shared.services.supersede import supersede_older
from shared.services.sweep import Deadline, Monotonic, SweepBudget, sweep_active
from shared.states import ACTIVE, RunState

log = logging.getLogger(__name__)

# What the runs step moves forward: every state in which the platform may still change under the run (a
# ``received`` run is submit's, unless it is stranded past the deadline).
RECONCILED = ACTIVE


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


@dataclass(frozen=True)
class SweepContext:
    """What every sweep step gets: collaborators, the invocation's time, and the budget it shares."""

    store: RunStore
    platform: MLPlatform
    now: datetime
    deadline: Deadline
    concurrency: int
    deploy_timeout: timedelta
    received_deadline: timedelta = DEFAULT_RECEIVED_DEADLINE
    orphan_grace: timedelta = DEFAULT_ORPHAN_GRACE


SweepStep = Callable[[SweepContext, ReconcileReport], None]


def _delete_and_fail(platform: MLPlatform, record: RunRecord, message: str, code: str, now: datetime) -> Outcome:
    assert record.endpoint_name
    if is_canary(record):
        # On another run's endpoint: only this run's deployment goes; the endpoint keeps serving.
        return fail_canary(platform, record, message, code, now)
    with contextlib.suppress(NotFoundError):
        platform.begin_delete_endpoint(record.endpoint_name)
    return Outcome(RunState.DEPLOY_FAILED, failure(message, code, "deployment"))


def finish_deployment(
    store: RunStore, platform: MLPlatform, record: RunRecord, now: datetime, deploy_timeout: timedelta
) -> RunRecord | None:
    """One look at a deploying run; never waits."""

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
            from shared.config.model import TrainingConfig

            model = platform.get_model(r.model_name, r.model_version)
            platform.begin_deploy(deploy_request(r, TrainingConfig.model_validate(r.config), model))
            return None
        if info.state != DeploymentState.SUCCEEDED:
            started = datetime.fromisoformat(r.timeline.get(RunState.DEPLOYING.value, now.isoformat()))
            if now - started > deploy_timeout:
                minutes = int(deploy_timeout.total_seconds() // 60)
                return _delete_and_fail(
                    platform,
                    r,
                    f"deployment still {info.state.value} after {minutes} minutes",
                    "DeploymentTimeout",
                    now,
                )
            return None

        if is_canary(r):
            return start_canary(platform, r, info.scoring_uri, now)
        platform.set_traffic(r.endpoint_name, {r.deployment_name: 100})
        smoke = dict(r.smoke_test or {})
        request = smoke.get("request")
        if request is not None:
            try:
                answer = platform.invoke(r.endpoint_name, r.deployment_name, request)
            except AutopilotError as exc:
                return _delete_and_fail(platform, r, f"smoke test failed: {exc}", "SmokeTestFailed", now)
            smoke["answer"] = answer_text(answer)[:4000]
            smoke["at"] = now.isoformat()

        def fill(x: RunRecord) -> None:
            x.scoring_uri = info.scoring_uri
            x.smoke_test = smoke or None

        return Outcome(RunState.DEPLOYED, fill)

    written = guarded(store, record, RunState.DEPLOYING, act)
    # --- [supersede policy] (shared/services/supersede.py): one endpoint per config path, the newest run's.
    if written is not None and written.state == RunState.DEPLOYED:
        supersede_older(store, platform, written)
    return written


def _step(
    store: RunStore,
    platform: MLPlatform,
    record: RunRecord,
    now: datetime,
    deploy_timeout: timedelta,
    received_deadline: timedelta = DEFAULT_RECEIVED_DEADLINE,
) -> RunRecord | None:
    """One move of the run; returns the record it wrote, or None when it stays where it is."""
    if record.state == RunState.RECEIVED:
        # A submit that never finished (shared/services/stranded.py): failed with a reason past the deadline.
        return fail_if_stranded(store, record, now, received_deadline)
    if record.state in (RunState.SUBMITTED, RunState.RUNNING) and record.job_name:
        return apply_job_status(store, platform, record, platform.get_job(record.job_name))
    if record.state == RunState.COMPLETED:
        return register(store, platform, record)
    if record.state == RunState.REGISTERED:
        return deploy(store, platform, record)
    if record.state == RunState.DEPLOYING:
        return finish_deployment(store, platform, record, now, deploy_timeout)
    if record.state == RunState.CANARY:
        observed = observe(store, platform, record, now)
        if observed is not None and observed.state == RunState.DEPLOYED:
            supersede_older(store, platform, observed)
        return observed
    return None


def reconcile_run(
    store: RunStore,
    platform: MLPlatform,
    record: RunRecord,
    now: datetime,
    deploy_timeout: timedelta,
    received_deadline: timedelta = DEFAULT_RECEIVED_DEADLINE,
) -> RunRecord:
    """Step the run forward as far as it can go now (a finished job goes on to register and deploy)."""
    for _ in range(len(RunState)):
        after = _step(store, platform, record, now, deploy_timeout, received_deadline)
        if after is None or after.state == record.state:
            return after or record
        record = after
    return record


def sweep_runs(ctx: SweepContext, report: ReconcileReport) -> None:
    """The runs step: every active run the reconcile moves, within the shared budget."""

    def handle(record: RunRecord) -> ReconcileOutcome:
        try:
            after = reconcile_run(ctx.store, ctx.platform, record, ctx.now, ctx.deploy_timeout, ctx.received_deadline)
        except Exception as exc:  # one bad run must not stop the sweep
            error = f"{type(exc).__name__}: {exc}"
            log.warning("run %s: reconcile failed: %s", record.run_id, error)
            return ReconcileOutcome(record.run_id, record.state.value, record.state.value, error)
        return ReconcileOutcome(record.run_id, record.state.value, after.state.value)

    swept = sweep_active(
        ctx.store,
        handle,
        wants=lambda r: r.state in RECONCILED,
        deadline=ctx.deadline,
        concurrency=ctx.concurrency,
    )
    report.outcomes.extend(swept.results)
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
