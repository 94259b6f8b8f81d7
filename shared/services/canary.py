"""One stable endpoint per model line: a run whose ``deployment.endpoint_name`` names an endpoint the app
already serves an earlier run from adds its deployment there, as a canary, instead of a new endpoint.

The steps, each a guarded step driven by events and the reconcile timer (never a sleep in a handler):
1. ``plan_join`` (from ``lifecycle.deploy``): the endpoint is the app's (its tags) and the ledger knows the run
   that made it; the deployment serving it now is the *previous* one. The run records both on its
   ``rollout`` (a ``Canary``, shared/ledger/parts.py) and its deployment is created at 0% traffic
   (``DeployRequest.join_endpoint``).
2. ``start_observing`` (reconcile, once the deployment succeeded and passed the smoke test, which reconcile
   sends it after giving it ``canary_percent`` of the traffic): the run is ``canary`` for ``observe_minutes``.
3. ``observe`` (reconcile): once the window is over, the error rates (5xx or 424 answers / requests) of both deployments
   over the window are compared. Pass: all traffic to the new deployment, the run ``deployed``, the previous
   run marked ``replaced_by`` with ``retire_after`` = now + ``grace_minutes``. Fail: traffic back, the new
   deployment deleted, the run ``deploy_failed`` with the reason; the previous run keeps serving. Rates that
   cannot be read (Azure Monitor down, or not readable by the app's identity) are no evidence: the canary
   waits, and ``METRICS_PATIENCE`` past its window it is failed the same way (``CanaryUnverified``).
4. ``retire`` (the cleanup timer): a deployment at 0% whose run's ``retire_after`` has passed is deleted and
   a deployed run ends ``deleted``. A deployment that carries traffic is never deleted.
``rollback.py`` (``autopilot rollback ENDPOINT``) puts the traffic back on the previous deployment while
it still exists. The canary's phases and their legal moves are ``RolloutPhase`` in shared/states.py.

Crash safety: traffic is set before the ledger is written and every platform call here is idempotent, so a
step re-run after a crash sets the same traffic and writes the same fields.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from shared.config.model import TrainingConfig
from shared.exceptions import AutopilotError, NotFoundError, PlatformError
from shared.ledger.parts import Canary, Observed, Rollout, SmokeTest
from shared.ledger.record import RunRecord
from shared.naming import TAG_RUN_ID
from shared.platform.port import (
    MAX_DEPLOYMENTS_PER_ENDPOINT,
    DeploymentMetrics,
    DeploymentSummary,
    MLPlatform,
)
from shared.runs import RunStore
from shared.services.step import Outcome, failure, guarded
from shared.services.sweep import SweepRuns
from shared.states import RolloutPhase, RunState

log = logging.getLogger(__name__)

ROLLING_OUT = frozenset({RunState.REGISTERED, RunState.DEPLOYING, RunState.CANARY})
ENDPOINT_GONE = "EndpointGone"  # the error code of a run whose endpoint the platform no longer has
# How long past its window a canary waits for the platform to report its error rates before it is failed.
METRICS_PATIENCE = timedelta(minutes=30)


class CanaryRefused(AutopilotError):
    """The run cannot deploy onto the endpoint it names; the message says why (and the field to change)."""


def _config(record: RunRecord) -> TrainingConfig:
    assert record.config is not None
    return record.config


def _live(deployments: list[DeploymentSummary]) -> DeploymentSummary | None:
    carrying = [d for d in deployments if d.traffic > 0]
    return max(carrying, key=lambda d: d.traffic) if carrying else None


def _move(record: RunRecord, phase: RolloutPhase | None, **changes: Any) -> None:
    """Write the run's canary moved to ``phase`` (None: in the phase it is) with ``changes``."""
    assert record.rollout is not None and record.rollout.canary is not None
    canary = record.rollout.canary
    moved = canary.moved(phase, **changes) if phase is not None else replace(canary, **changes)
    record.rollout = replace(record.rollout, canary=moved)


# ------------------------------------------------------------------------------------------------- 1. join


def plan_join(store: RunStore, platform: MLPlatform, record: RunRecord, config: TrainingConfig) -> Rollout | None:
    """The rollout a run starts on an endpoint another run serves, or None when the endpoint is its own.

    Raises ``CanaryRefused`` when it cannot join (quota, name clash, a rollout already under way)."""
    if record.canary is not None:
        return record.rollout  # decided before a crash: the same decision
    name = config.deployment.endpoint_name
    if not name or not record.endpoint_name or not record.deployment_name:
        return None  # a derived endpoint name is the run's own
    endpoint = next((e for e in platform.list_endpoints() if e.name == name), None)
    if endpoint is None or endpoint.tags.get(TAG_RUN_ID) == record.run_id:
        return None  # a new endpoint, or this run's own (a retry)
    creator = endpoint.tags.get(TAG_RUN_ID) or ""
    if store.get(creator) is None:
        raise CanaryRefused(
            f"endpoint {name} carries the app's tags but its run {creator} is not in the ledger; the app does not "
            "take it over (choose another deployment.endpoint_name)"
        )
    deployments = platform.list_deployments(name)
    others = [d for d in deployments if d.run_id != record.run_id]
    if any(d.name == record.deployment_name for d in others):
        raise CanaryRefused(
            f"endpoint {name} already has a deployment named {record.deployment_name} (of another run): "
            "remove deployment.deployment_name or choose another"
        )
    if len(others) >= MAX_DEPLOYMENTS_PER_ENDPOINT:
        raise CanaryRefused(
            f"endpoint {name} has {len(others)} deployments; Azure ML allows {MAX_DEPLOYMENTS_PER_ENDPOINT} per "
            "endpoint: roll out after older deployments are retired, or choose another deployment.endpoint_name"
        )
    for other in others:
        run = store.get(other.run_id) if other.run_id else None
        if run is not None and run.state in ROLLING_OUT and run.run_id != record.run_id:
            raise CanaryRefused(f"run {run.run_id} is already rolling out on endpoint {name}; deploy when it ended")
    live = _live(others)
    if live is None or not live.run_id:
        raise CanaryRefused(f"endpoint {name} has no deployment carrying traffic to compare a canary with")
    return Rollout(Canary(name, live.name, live.run_id, config.deployment.canary_percent))


# ------------------------------------------------------------------------------------------- 2. start


def abort_on_platform(platform: MLPlatform, record: RunRecord) -> bool:
    """Traffic back on the previous deployment, the new one deleted. True when the deletion was started;
    False when the platform still saw traffic on it (the cleanup timer's retire step deletes it later)."""
    canary, new = record.canary, record.deployment_name
    assert canary is not None and new
    with contextlib.suppress(NotFoundError):
        existing = {d.name for d in platform.list_deployments(canary.endpoint)}
        # Traffic may name existing deployments only (Azure refuses others): a deployment never created has none.
        traffic = {canary.previous_deployment: 100, **({new: 0} if new in existing else {})}
        platform.set_traffic(canary.endpoint, traffic)
    try:
        platform.begin_delete_deployment(canary.endpoint, new)
    except NotFoundError:
        return True
    except PlatformError as exc:
        if exc.code != "DeploymentHasTraffic":
            raise
        return False
    return True


def fail_canary(
    platform: MLPlatform, record: RunRecord, message: str, code: str, now: datetime, **seen: Observed
) -> Outcome:
    """The outcome of a canary that failed: the previous deployment serves, the run ends ``deploy_failed``.
    ``seen`` are the observations the verdict was made on (``canary_seen``, ``previous_seen``)."""
    deleted = abort_on_platform(platform, record)
    canary = record.canary
    assert canary is not None
    reason = f"{message}; traffic is back on {canary.previous_deployment} (run {canary.previous_run})"
    fail = failure(reason, code, "deployment")

    def fill(r: RunRecord) -> None:
        fail(r)
        _move(r, RolloutPhase.FAILED, reason=message, ended_at=now, **seen)
        assert r.rollout is not None
        if deleted:
            r.rollout = replace(r.rollout, deployment_deleted_at=now)
        else:
            r.rollout = replace(r.rollout, retire_after=now)

    return Outcome(RunState.DEPLOY_FAILED, fill)


def gone_message(endpoint: str) -> str:
    return f"endpoint {endpoint} no longer exists on the platform (deleted outside the app)"


def endpoint_gone(record: RunRecord, now: datetime) -> Outcome:
    """The outcome of a canary whose endpoint the platform no longer has: ``deploy_failed`` with the reason
    (nothing is left to delete or to put the traffic back on)."""
    canary = record.canary
    assert canary is not None
    message = gone_message(canary.endpoint)
    fail = failure(message, ENDPOINT_GONE, "deployment")

    def fill(r: RunRecord) -> None:
        fail(r)
        _move(r, RolloutPhase.FAILED, reason=message, ended_at=now)

    return Outcome(RunState.DEPLOY_FAILED, fill)


def start_observing(record: RunRecord, scoring_uri: str | None, smoke: SmokeTest | None, now: datetime) -> Outcome:
    """The canary has its share of the traffic and passed its smoke test: the observation window starts."""
    until = now + timedelta(minutes=_config(record).deployment.observe_minutes)

    def fill(r: RunRecord) -> None:
        r.scoring_uri = scoring_uri
        r.smoke_test = smoke
        _move(r, RolloutPhase.OBSERVING, started_at=now, observe_until=until)

    return Outcome(RunState.CANARY, fill)


# ----------------------------------------------------------------------------------------- 3. observe


def observed(metrics: DeploymentMetrics | None) -> Observed:
    m = metrics or DeploymentMetrics(0, 0, known=False)
    return Observed(m.requests, m.errors, round(m.error_rate, 4), m.known)


def verdict(new: DeploymentMetrics | None, old: DeploymentMetrics | None, tolerance: float) -> str | None:
    """Why the canary failed, or None when it passed. No request on the canary is no evidence against it."""
    if new is None or not new.requests:
        return None
    old_rate = old.error_rate if old is not None else 0.0
    if new.error_rate > old_rate + tolerance:
        return (
            f"canary error rate {new.error_rate:.1%} ({new.errors}/{new.requests} answers 5xx or 424) is above the "
            f"previous deployment's {old_rate:.1%} by more than {tolerance:.1%} (deployment.max_error_rate_increase)"
        )
    return None


def observe(store: RunStore, platform: MLPlatform, record: RunRecord, now: datetime) -> RunRecord | None:
    """One look at a canary: progress while the window is open, then promote or roll back."""

    def act(r: RunRecord) -> Outcome | None:
        canary = r.canary
        assert r.deployment_name and canary and canary.started_at and canary.observe_until
        endpoint, previous = canary.endpoint, canary.previous_deployment
        try:
            names = {d.name for d in platform.list_deployments(endpoint)}
        except NotFoundError:
            # The platform says the endpoint is gone (deleted by hand): nothing to promote or roll back to.
            return endpoint_gone(r, now)
        if r.deployment_name not in names:
            # Deleted under it (by hand, or by an abort whose ledger write was lost): it cannot be promoted.
            return fail_canary(platform, r, "the canary deployment is gone", "ResourceNotFound", now)
        try:
            metrics = platform.deployment_metrics(endpoint, canary.started_at)
        except AutopilotError as exc:  # Monitor throttled, down, or the identity may not read it
            return unverified(platform, r, exc, now)
        seen = {
            "canary_seen": observed(metrics.get(r.deployment_name)),
            "previous_seen": observed(metrics.get(previous)),
        }
        config = _config(r)
        if now < canary.observe_until:
            if (canary.canary_seen, canary.previous_seen) == (seen["canary_seen"], seen["previous_seen"]):
                return None
            return Outcome(None, lambda x: _move(x, None, **seen))
        why = verdict(metrics.get(r.deployment_name), metrics.get(previous), config.deployment.max_error_rate_increase)
        if why is not None:
            return fail_canary(platform, r, why, "CanaryErrorRate", now, **seen)
        # Traffic may name existing deployments only: one deleted by hand meanwhile is left out.
        platform.set_traffic(endpoint, {r.deployment_name: 100, **({previous: 0} if previous in names else {})})
        retire_after = now + timedelta(minutes=config.deployment.grace_minutes)
        mark_replaced(store, canary.previous_run, r.run_id, retire_after)
        kept = f"{previous} kept until {retire_after.isoformat()}" if previous in names else f"{previous} is gone"

        def promoted(x: RunRecord) -> None:
            _move(x, RolloutPhase.PROMOTED, promoted_at=now, **seen)
            x.notes.append(f"canary passed: all traffic on {x.deployment_name}; {kept}")

        return Outcome(RunState.DEPLOYED, promoted)

    return guarded(store, record, RunState.CANARY, act)


def unverified(platform: MLPlatform, record: RunRecord, exc: AutopilotError, now: datetime) -> Outcome | None:
    """The error rates could not be read. No answer is no evidence either way: the canary keeps its share and
    the next look asks again; once ``METRICS_PATIENCE`` past its window, it is failed (traffic back on the
    previous deployment, which kept serving throughout) rather than left a canary for ever."""
    canary = record.canary
    assert canary is not None and canary.observe_until is not None
    given_up = canary.observe_until + METRICS_PATIENCE
    if now < given_up:
        log.warning("run %s: canary error rates not read (%s); next look", record.run_id, exc)
        return None
    minutes = int(METRICS_PATIENCE.total_seconds() // 60)
    why = f"the error rates could not be read in the {minutes} min after the window ({exc})"
    return fail_canary(platform, record, why, "CanaryUnverified", now)


def mark_replaced(store: RunStore, run_id: str, by: str, retire_after: datetime) -> None:
    def fill(r: RunRecord) -> None:
        rollout = r.rollout or Rollout()
        if rollout.replaced_by == by:
            return
        r.rollout = replace(rollout, replaced_by=by, retire_after=retire_after)
        r.notes.append(f"replaced by run {by}; its deployment is kept at 0% until {retire_after.isoformat()}")

    store.update(run_id, fill)


# ------------------------------------------------------------------------------------------- 4. retire


def retire(runs: SweepRuns, platform: MLPlatform, endpoint: str, now: datetime) -> list[str]:
    """Delete the endpoint's deployments at 0% whose runs are past ``retire_after``; returns their names."""
    try:
        deployments = platform.list_deployments(endpoint)
    except NotFoundError:
        return []
    retired: list[str] = []
    for deployment in deployments:
        if deployment.traffic > 0 or not deployment.run_id:
            continue  # never a deployment that carries traffic
        record = runs.get(deployment.run_id)
        after = record.rollout.retire_after if record is not None and record.rollout is not None else None
        if record is None or after is None or now < after:
            continue
        try:
            platform.begin_delete_deployment(endpoint, deployment.name)
        except PlatformError as exc:
            log.warning("deployment %s/%s: not retired: %s", endpoint, deployment.name, exc)
            continue
        retired.append(deployment.name)

        def deleted(r: RunRecord, name: str = deployment.name) -> None:
            r.rollout = replace(r.rollout or Rollout(), deployment_deleted_at=now)
            r.notes.append(f"deployment {name} deleted: replaced and past its grace period")

        if record.state == RunState.DEPLOYED:
            runs.advance(record, RunState.DELETED, deleted)
        else:
            runs.update(record, deleted)
    return retired
