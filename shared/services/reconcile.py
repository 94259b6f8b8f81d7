"""Service: the reconcile timer. Finishes what events did not: lost job events, registrations, deployments.

- submitted/running: ask the platform for the job; an ended job is handled as if its event had come;
- completed: register; registered: start the deployment;
- deploying: Succeeded -> traffic 100%, smoke test -> deployed; Failed, a failed smoke test or a deployment
  past its deadline -> delete what was created -> deploy_failed with the platform's error code.
One run's failure is logged and does not stop the others.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.exceptions import AutopilotError, NotFoundError
from shared.ledger.record import RunRecord
from shared.platform.port import DeploymentState, MLPlatform
from shared.runs import RunStore
from shared.scoring import answer_text
from shared.services.lifecycle import _fail_with, apply_job_status, deploy, deploy_request, register
from shared.services.stranded import DEFAULT_RECEIVED_DEADLINE, sweep_received
from shared.services.supersede import supersede_older
from shared.states import RunState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileOutcome:
    run_id: str
    before: str
    after: str
    error: str | None = None


def _delete_and_fail(store: RunStore, platform: MLPlatform, record: RunRecord, message: str, code: str) -> None:
    assert record.endpoint_name
    with contextlib.suppress(NotFoundError):
        platform.begin_delete_endpoint(record.endpoint_name)
    store.advance(record.run_id, RunState.DEPLOY_FAILED, _fail_with(message, code, "deployment"))


def finish_deployment(
    store: RunStore, platform: MLPlatform, record: RunRecord, now: datetime, deploy_timeout: timedelta
) -> None:
    """One look at a deploying run; never waits."""
    assert record.endpoint_name and record.deployment_name
    info = platform.get_deployment(record.endpoint_name, record.deployment_name)
    if info.state == DeploymentState.FAILED:
        message = info.error_message or "the deployment failed"
        _delete_and_fail(store, platform, record, message, info.error_code or "DeploymentFailed")
        return
    if info.state == DeploymentState.MISSING:
        # The create call was lost (crash before the platform saw it): start it again, idempotently.
        config = record.config
        if config is None or record.model_name is None or record.model_version is None:
            _delete_and_fail(store, platform, record, "deployment disappeared", "ResourceNotFound")
            return
        from shared.config.model import TrainingConfig

        model = platform.get_model(record.model_name, record.model_version)
        platform.begin_deploy(deploy_request(record, TrainingConfig.model_validate(config), model))
        return
    if info.state != DeploymentState.SUCCEEDED:
        started = datetime.fromisoformat(record.timeline.get(RunState.DEPLOYING.value, now.isoformat()))
        if now - started > deploy_timeout:
            _delete_and_fail(
                store,
                platform,
                record,
                f"deployment still {info.state.value} after {int(deploy_timeout.total_seconds() // 60)} minutes",
                "DeploymentTimeout",
            )
        return

    platform.set_traffic(record.endpoint_name, {record.deployment_name: 100})
    smoke = dict(record.smoke_test or {})
    request = smoke.get("request")
    if request is not None:
        try:
            answer = platform.invoke(record.endpoint_name, record.deployment_name, request)
        except AutopilotError as exc:
            _delete_and_fail(store, platform, record, f"smoke test failed: {exc}", "SmokeTestFailed")
            return
        smoke["answer"] = answer_text(answer)[:4000]
        smoke["at"] = now.isoformat()

    def fill(r: RunRecord) -> None:
        r.scoring_uri = info.scoring_uri
        r.smoke_test = smoke or None

    deployed = store.advance(record.run_id, RunState.DEPLOYED, fill)
    # --- [supersede policy] (shared/services/supersede.py): one endpoint per config path, the newest run's.
    if deployed is not None:
        supersede_older(store, platform, deployed)
    # --- [/supersede policy]


def reconcile_run(
    store: RunStore, platform: MLPlatform, record: RunRecord, now: datetime, deploy_timeout: timedelta
) -> None:
    """Step the run forward as far as it can go now (a finished job goes on to register and deploy)."""
    for _ in range(len(RunState)):
        _step(store, platform, record, now, deploy_timeout)
        after = store.get(record.run_id)
        if after is None or after.state == record.state:
            return
        record = after


def _step(store: RunStore, platform: MLPlatform, record: RunRecord, now: datetime, deploy_timeout: timedelta) -> None:
    if record.state in (RunState.SUBMITTED, RunState.RUNNING) and record.job_name:
        apply_job_status(store, platform, record, platform.get_job(record.job_name))
    elif record.state == RunState.COMPLETED:
        register(store, platform, record.run_id)
    elif record.state == RunState.REGISTERED:
        deploy(store, platform, record.run_id)
    elif record.state == RunState.DEPLOYING:
        finish_deployment(store, platform, record, now, deploy_timeout)


def reconcile(
    store: RunStore,
    platform: MLPlatform,
    *,
    deploy_timeout: timedelta,
    received_deadline: timedelta = DEFAULT_RECEIVED_DEADLINE,
) -> list[ReconcileOutcome]:
    """Look once at every run that is not finished."""
    outcomes: list[ReconcileOutcome] = []
    # --- [stranded sweep] (shared/services/stranded.py): runs stuck in `received` end failed with a reason.
    outcomes += [
        ReconcileOutcome(o.run_id, o.before, o.after, o.error)
        for o in sweep_received(store, deadline=received_deadline)
    ]
    # --- [/stranded sweep]
    now = store.clock()
    active = (
        RunState.SUBMITTED,
        RunState.RUNNING,
        RunState.COMPLETED,
        RunState.REGISTERED,
        RunState.DEPLOYING,
    )
    for record in store.list(active):
        error = None
        try:
            reconcile_run(store, platform, record, now, deploy_timeout)
        except Exception as exc:  # one bad run must not stop the sweep
            error = f"{type(exc).__name__}: {exc}"
            log.warning("run %s: reconcile failed: %s", record.run_id, error)
        after = store.get(record.run_id)
        outcomes.append(ReconcileOutcome(record.run_id, record.state.value, after.state.value if after else "?", error))
    return outcomes
