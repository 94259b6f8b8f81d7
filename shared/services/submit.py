"""Service: a config blob arrived. Validate it, plan the job, submit it, record the run.

Idempotent: the run id is derived from path and bytes, the job name is the run id, and a run that is past
``received`` is left alone. A handler that dies after submitting but before the ledger write converges on
re-delivery, because the platform returns the job it already has under that name.
"""

from __future__ import annotations

import logging
from pathlib import Path

from shared.config.loader import load_config
from shared.exceptions import ConfigError, FieldIssue, RejectedError
from shared.ledger.record import RunRecord
from shared.naming import check_blob_name, config_name, run_id
from shared.platform.port import MLPlatform
from shared.runs import RunStore, issues_to_errors
from shared.services.planning import build_plan
from shared.states import RunState

log = logging.getLogger(__name__)


def _reject(store: RunStore, run: str, issues: list[FieldIssue], code: str) -> RunRecord | None:
    def fill(record: RunRecord) -> None:
        record.errors = issues_to_errors(issues)
        record.last_error_code = code

    log.info("run %s: rejected (%s): %s", run, code, "; ".join(str(i) for i in issues))
    return store.advance(run, RunState.REJECTED, fill)


def submit_config(
    *,
    container: str,
    blob_name: str,
    content: bytes,
    etag: str | None,
    store: RunStore,
    platform: MLPlatform,
    data_root: Path,
) -> RunRecord | None:
    """Handle one delivery of a config blob. Raises only for transient platform failures (retry later)."""
    name = config_name(blob_name)
    run = run_id(container, blob_name, content)
    record, created = store.create(
        run,
        config_blob=blob_name,
        config_name=name,
        content=content,
        config_etag=etag,
        platform=platform.name,
    )
    if record.state != RunState.RECEIVED:
        log.info("run %s: already %s; delivery ignored", run, record.state.value)
        return record
    if not created:
        log.info("run %s: resuming a submit that did not finish", run)

    try:
        check_blob_name(blob_name)
        config = load_config(content)
    except RejectedError as exc:
        return _reject(store, run, exc.issues, "InvalidBlobName")
    except ConfigError as exc:
        return _reject(store, run, exc.issues, "InvalidConfig")

    try:
        plan = build_plan(
            config,
            run_id=run,
            config_blob=blob_name,
            config_name=name,
            platform=platform,
            data_root=data_root,
        )
    except RejectedError as exc:
        return _reject(store, run, exc.issues, "Rejected")

    job = platform.submit_job(plan.job)

    def fill(rec: RunRecord) -> None:
        rec.config = config.model_dump(mode="json")
        rec.effective_params = plan.params.to_record()
        rec.notes = plan.notes
        rec.job_name = job.name
        rec.job_status = job.status.value
        rec.experiment_name = plan.job.experiment_name
        rec.model_name = plan.model_name
        rec.endpoint_name = plan.endpoint_name if config.deployment.enabled else None
        rec.deployment_name = plan.deployment_name if config.deployment.enabled else None
        rec.inference_instance_type = plan.inference_instance_type
        rec.smoke_test = {"request": plan.smoke_request} if plan.smoke_request else None
        rec.errors = []

    return store.advance(run, RunState.SUBMITTED, fill) or store.get(run)
