"""Service: a config blob arrived. Validate it, plan the job, submit it, record the run.

Idempotent: the run id is derived from path and bytes, the job name is the run id, and a run that is past
``received`` is left alone. A handler that dies after submitting but before the ledger write converges on
re-delivery, because the platform returns the job it already has under that name.

A person may cancel the run while it is still ``received`` (``autopilot cancel``): the ledger write that would
move it to ``submitted`` is then refused, and the job this submit just created is canceled here (a re-delivery
that finds the run canceled does the same), so no job runs for a canceled run (see ``cancel.py``).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from shared import telemetry
from shared.config.loader import load_config, notify_section_of
from shared.config.model import TrainingConfig
from shared.exceptions import ConfigError, FieldIssue, PlatformError, RejectedError, TransientPlatformError
from shared.ledger.limits import MAX_FIELD_JSON_CHARS, json_chars
from shared.ledger.parts import SmokeTest
from shared.ledger.record import RunRecord
from shared.naming import check_blob_name, config_name, run_id
from shared.platform.port import JobInfo, MLPlatform
from shared.runs import RunStore
from shared.services.cancel import cancel_job_of
from shared.services.planning import SubmissionPlan, build_plan
from shared.services.step import failure, rejection
from shared.states import RunState

log = logging.getLogger(__name__)


def _reject(
    store: RunStore, record: RunRecord, issues: list[FieldIssue], code: str, content: bytes | None = None
) -> RunRecord | None:
    log.info("run %s: rejected (%s): %s", record.run_id, code, "; ".join(str(i) for i in issues))
    fill = rejection(issues, code)
    notify = notify_section_of(content) if content is not None else None

    def fill_and_keep_notify(r: RunRecord) -> None:
        fill(r)
        r.notify = notify  # so that a rejection still reaches the people the config names

    return store.advance(record, RunState.REJECTED, fill_and_keep_notify)


def _too_big_for_the_ledger(config: dict[str, Any], smoke: dict[str, Any] | None) -> FieldIssue | None:
    """The normalised config and smoke request are kept on the run; refuse what the ledger cannot hold."""
    for path, value in (("deployment.smoke_test", smoke), ("", config)):
        size = json_chars(value)
        if size > MAX_FIELD_JSON_CHARS:
            return FieldIssue(
                path,
                f"{size} characters once normalised; a run keeps at most {MAX_FIELD_JSON_CHARS} "
                "(shorten the smoke test conversation or the registration tags)",
            )
    return None


def _fail(store: RunStore, record: RunRecord, message: str, code: str) -> RunRecord | None:
    log.warning("run %s: failed (%s): %s", record.run_id, code, message)
    return store.advance(record, RunState.FAILED, failure(message, code))


def _give_up_or_retry(
    store: RunStore, record: RunRecord, exc: TransientPlatformError, max_attempts: int
) -> RunRecord | None:
    """Count the failed try; re-raise (the trigger retries) until the budget is spent, then fail the run.

    The blob trigger would park the blob in the poison queue after 5 tries and the run would sit in
    ``received`` with no word to the person who dropped it; ending it ``failed`` tells them why.
    """

    def count(record: RunRecord) -> None:
        record.attempts["submit"] = record.attempts.get("submit", 0) + 1

    updated = store.update(record, count)
    tries = updated.attempts.get("submit", 0) if updated else max_attempts
    if tries < max_attempts:
        log.warning("run %s: submit failed (try %d of %d): %s", record.run_id, tries, max_attempts, exc)
        raise exc
    return _fail(store, updated or record, f"could not submit after {tries} tries: {exc}", exc.code or "SubmitFailed")


def _stop_the_job_of_a_canceled_run(
    store: RunStore, platform: MLPlatform, record: RunRecord, job: JobInfo
) -> RunRecord:
    """The run was canceled while this submit created its job: cancel the job, and name it on the run."""
    platform.cancel_job(job.name)
    log.info("run %s: canceled while it was submitted; job %s canceled", record.run_id, job.name)

    def name_the_job(r: RunRecord) -> None:
        if r.job_name is None:
            r.job_name = job.name
            r.notes.append(f"job {job.name} was created as the run was canceled; it was canceled too")

    return store.update(record, name_the_job) or record


@dataclasses.dataclass(frozen=True)
class _Delivery:
    """One delivery of a config blob, as each phase of the submit sees it."""

    run: str
    blob_name: str
    config_name: str
    content: bytes
    store: RunStore
    platform: MLPlatform


@dataclasses.dataclass(frozen=True)
class _Ended:
    """A phase ended the delivery early; ``submit_config`` returns this record."""

    record: RunRecord | None


def submit_config(
    *,
    container: str,
    blob_name: str,
    content: bytes,
    etag: str | None,
    store: RunStore,
    platform: MLPlatform,
    data_root: Path,
    max_attempts: int = 5,
    quota_check: str = "reject",
    event_grid_topics: frozenset[str] = frozenset(),
    notify_allow_private: bool = False,
) -> RunRecord | None:
    """Handle one delivery of a config blob. Raises only for transient platform failures (retry later).

    ``quota_check``, ``event_grid_topics`` and ``notify_allow_private`` are the settings' (see ``build_plan``)."""
    run = run_id(container, blob_name, content)
    with telemetry.run_scope(run_id=run, config=blob_name, span="autopilot.submit_config"):
        delivery = _Delivery(run, blob_name, config_name(blob_name), content, store, platform)
        record = _create_or_resume(delivery, etag)
        if record.state != RunState.RECEIVED:
            return record  # a repeated delivery, left alone
        config = _valid_config(delivery, record)
        if isinstance(config, _Ended):
            return config.record
        submitted = _plan_and_submit(
            delivery,
            record,
            config,
            data_root=data_root,
            max_attempts=max_attempts,
            quota_check=quota_check,
            event_grid_topics=event_grid_topics,
            notify_allow_private=notify_allow_private,
        )
        if isinstance(submitted, _Ended):
            return submitted.record
        plan, job = submitted
        return _record_submission(delivery, record, config, plan, job)


def _create_or_resume(delivery: _Delivery, etag: str | None) -> RunRecord:
    """The run of this delivery: made now, or found (a re-delivery, or a submit that died half-way).

    A run past ``received`` is returned as it is, to be left alone; one canceled before its submit wrote
    ``submitted`` may still have the job that submit created, which is canceled here."""
    record, created = delivery.store.create(
        delivery.run,
        config_blob=delivery.blob_name,
        config_name=delivery.config_name,
        content=delivery.content,
        config_etag=etag,
        platform=delivery.platform.name,
    )
    if record.state != RunState.RECEIVED:
        log.info("run %s: already %s; delivery ignored", delivery.run, record.state.value)
        if record.state == RunState.CANCELED:
            cancel_job_of(delivery.platform, record)  # a submit that died after creating the job, before its write
        return record
    if not created:
        log.info("run %s: resuming a submit that did not finish", delivery.run)
    return record


def _valid_config(delivery: _Delivery, record: RunRecord) -> TrainingConfig | _Ended:
    """The blob's name and bytes checked; a run that fails either ends ``rejected``."""
    try:
        check_blob_name(delivery.blob_name)
        return load_config(delivery.content)
    except RejectedError as exc:
        return _Ended(_reject(delivery.store, record, exc.issues, "InvalidBlobName"))
    except ConfigError as exc:
        return _Ended(_reject(delivery.store, record, exc.issues, "InvalidConfig", delivery.content))


def _plan_and_submit(
    delivery: _Delivery,
    record: RunRecord,
    config: TrainingConfig,
    *,
    data_root: Path,
    max_attempts: int,
    quota_check: str,
    event_grid_topics: frozenset[str],
    notify_allow_private: bool,
) -> tuple[SubmissionPlan, JobInfo] | _Ended:
    """Plan the job and submit it. The job's name is the run id, so a second submit gets the job the first made.

    A plan the checks refuse ends the run ``rejected``; a platform failure is retried (re-raised) until the
    budget is spent, then the run ends ``failed``, as it does at once for a refusal not worth retrying."""
    store = delivery.store
    try:
        plan = build_plan(
            config,
            run_id=delivery.run,
            config_blob=delivery.blob_name,
            config_name=delivery.config_name,
            platform=delivery.platform,
            data_root=data_root,
            quota_check=quota_check,
            event_grid_topics=event_grid_topics,
            notify_allow_private=notify_allow_private,
        )
        too_big = _too_big_for_the_ledger(config.model_dump(mode="json"), plan.smoke_request)
        if too_big:
            return _Ended(_reject(store, record, [too_big], "ConfigTooLarge"))
        return plan, delivery.platform.submit_job(plan.job)
    except RejectedError as exc:
        return _Ended(_reject(store, record, exc.issues, "Rejected"))
    except TransientPlatformError as exc:
        return _Ended(_give_up_or_retry(store, record, exc, max_attempts))
    except PlatformError as exc:
        # Not the user's config and not worth retrying (e.g. the job name is taken by another run).
        return _Ended(_fail(store, record, f"the platform refused the job: {exc}", exc.code or "SubmitFailed"))


def _record_submission(
    delivery: _Delivery, record: RunRecord, config: TrainingConfig, plan: SubmissionPlan, job: JobInfo
) -> RunRecord | None:
    """Move the run to ``submitted`` with what the plan decided; a run canceled meanwhile has its new job canceled."""
    platform = delivery.platform

    def fill(rec: RunRecord) -> None:
        rec.config = config
        rec.effective_params = dict(sorted(plan.params.params.items()))
        rec.notes = plan.notes
        rec.job_name = job.name
        rec.job_status = job.status.value
        rec.experiment_name = plan.job.experiment_name
        rec.model_name = plan.model_name
        rec.endpoint_name = plan.endpoint_name if config.deployment.enabled else None
        rec.deployment_name = plan.deployment_name if config.deployment.enabled else None
        rec.links = platform.links(job.name, rec.endpoint_name)
        rec.inference_instance_type = plan.inference_instance_type
        rec.smoke_test = SmokeTest(plan.smoke_request) if plan.smoke_request else None
        rec.errors = []

    submitted = delivery.store.advance(record, RunState.SUBMITTED, fill)
    if submitted is not None:
        return submitted
    current = delivery.store.get(delivery.run)
    if current is not None and current.state == RunState.CANCELED:
        return _stop_the_job_of_a_canceled_run(delivery.store, platform, current, job)
    return current
