"""Services driven by the platform's events (and by the reconcile timer when events are lost).

Each step is a guarded step (``step.py``): it takes the run as its caller read it, checks it is in the state
the step starts from, does an idempotent platform call keyed by names derived from the run id, then advances
the ledger and hands the written record on. Re-running a step after a crash, a duplicate event or an
out-of-order event ends in the same state with no second job, model or endpoint.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from shared import telemetry
from shared.config.model import TrainingConfig
from shared.events import ModelRegisteredEvent, RunEvent, topic_matches
from shared.exceptions import NotFoundError, PlatformError, RejectedError, TransientPlatformError
from shared.ledger.record import RunRecord
from shared.naming import TAG_IDLE_MINUTES, TAG_KEEP, TAG_RUN_ID, app_tags, is_managed
from shared.platform.port import DeployRequest, JobInfo, JobStatus, MLPlatform, ModelRef, RegisterRequest
from shared.runs import RunStore
from shared.services.canary import CanaryRefused, plan_join
from shared.services.cancel import remove_deployed
from shared.services.step import Outcome, failure, guarded
from shared.states import RunState

log = logging.getLogger(__name__)


def apply_job_status(store: RunStore, platform: MLPlatform, record: RunRecord, job: JobInfo) -> RunRecord | None:
    """Move the run to match the job's status; a completed job is registered right away.

    Returns the run as last written, or None when nothing changed."""

    def status(x: RunRecord) -> None:
        x.job_status = job.status.value

    def act(r: RunRecord) -> Outcome | None:
        if job.status == JobStatus.UNKNOWN:
            return None  # nothing is decided on a status nobody mapped; reconcile looks again
        if job.status.is_waiting:
            if r.state == RunState.SUBMITTED and r.job_status != job.status.value:
                return Outcome(None, status)
            return None
        if job.status.is_running:
            if r.state == RunState.SUBMITTED:
                return Outcome(RunState.RUNNING, status)
            return Outcome(None, status) if r.job_status != job.status.value else None
        if job.status == JobStatus.FAILED:
            error = job.error
            if error is None:
                try:
                    error = platform.get_job(job.name).error
                except NotFoundError:
                    error = None
            return Outcome(RunState.FAILED, failure(error or "the job failed (no reason given)", "JobFailed"))
        if job.status == JobStatus.CANCELED:
            return Outcome(RunState.CANCELED, failure("the job was canceled", "JobCanceled"))
        # Completed: record metrics and the loss history (the event carries none; ask the platform).
        metrics, history = dict(job.metrics), list(job.history)
        if not metrics:
            try:
                found = platform.get_job(job.name)
                metrics, history = dict(found.metrics), list(found.history)
            except NotFoundError:
                metrics = {}

        def completed(x: RunRecord) -> None:
            x.job_status = JobStatus.COMPLETED.value
            x.metrics = {**x.metrics, **metrics}
            x.history = history or x.history

        return Outcome(RunState.COMPLETED, completed)

    written = guarded(store, record, (RunState.SUBMITTED, RunState.RUNNING), act)
    done = written or (record if record.state == RunState.COMPLETED and job.status == JobStatus.COMPLETED else None)
    if done is not None and done.state == RunState.COMPLETED:
        # Also a duplicate completion of a run whose registration did not finish: register it now.
        return register(store, platform, done) or done
    return written


def on_run_event(store: RunStore, platform: MLPlatform, event: RunEvent, expected_topic: str = "") -> str:
    """RunCompleted / RunStatusChanged. Returns what was done, for the log."""
    if not topic_matches(event, expected_topic):
        return f"ignored: topic {event.topic!r} is not this workspace"
    if event.is_child_run:
        return f"ignored: child step {event.run_id} ({event.run_type})"
    tags = event.run_tags
    if not is_managed(tags):
        return f"ignored: run {event.run_id} is not managed by the app"
    record = store.get(tags[TAG_RUN_ID])
    if record is None:
        return f"ignored: run {tags[TAG_RUN_ID]} is not in the ledger"
    if record.job_name != event.run_id:
        return f"ignored: {event.run_id} is not the job of run {record.run_id}"
    telemetry.bind(record)  # the delivery is about this run: the handler's own lines carry its names
    status = JobStatus.parse(event.run_status)
    if status == JobStatus.UNKNOWN:
        return f"ignored: unknown run status {event.run_status!r}"
    after = apply_job_status(store, platform, record, JobInfo(name=event.run_id, status=status, tags=tags))
    return f"run {record.run_id}: {event.run_status} -> {(after or record).state.value}"


def register(store: RunStore, platform: MLPlatform, run: RunRecord | str) -> RunRecord | None:
    """completed -> registered: register the job's MLflow output (idempotent on the platform side)."""

    def act(record: RunRecord) -> Outcome:
        assert record.job_name and record.model_name
        config = record.config
        description = (config.registration.description if config else None) or (
            f"{config.model.name if config else 'model'} fine-tuned by Fine-tune Autopilot (run {record.run_id})"
        )
        tags = {**(config.registration.tags if config else {}), **app_tags(record.run_id, record.config_blob)}
        request = RegisterRequest(
            job_name=record.job_name, model_name=record.model_name, description=description, tags=tags
        )
        try:
            model = platform.register_model(request)
        except (RejectedError, NotFoundError) as exc:
            return Outcome(RunState.FAILED, failure(f"registration failed: {exc}", "RegistrationFailed"))

        def fill(r: RunRecord) -> None:
            r.model_name = model.name
            r.model_version = model.version

        return Outcome(RunState.REGISTERED, fill)

    return guarded(store, run, RunState.COMPLETED, act)


def on_model_registered(
    store: RunStore, platform: MLPlatform, event: ModelRegisteredEvent, expected_topic: str = ""
) -> str:
    """ModelRegistered: start the deployment of the app's model versions."""
    if not topic_matches(event, expected_topic):
        return f"ignored: topic {event.topic!r} is not this workspace"
    tags = event.model_tags
    if not is_managed(tags):
        return f"ignored: model {event.model_name}:{event.model_version} is not managed by the app"
    record = store.get(tags[TAG_RUN_ID])
    if record is None:
        return f"ignored: run {tags[TAG_RUN_ID]} is not in the ledger"
    telemetry.bind(record)
    if record.state == RunState.COMPLETED:
        # The register handler died after registering but before its ledger write: finish it here.
        record = register(store, platform, record) or record
    record = deploy(store, platform, record) or record
    return f"run {record.run_id}: model {event.model_name}:{event.model_version} -> {record.state.value}"


def quality_gate_failure(record: RunRecord, config: TrainingConfig) -> str | None:
    gate = config.deployment.quality_gate
    if gate is None:
        return None
    after = record.metrics.get("eval_loss_after")
    before = record.metrics.get("eval_loss_before")
    if gate.max_eval_loss is not None:
        if after is None:
            return "quality gate: the job reported no eval_loss_after"
        if after > gate.max_eval_loss:
            return f"quality gate: eval loss {after:.4f} is above max_eval_loss {gate.max_eval_loss}"
    if gate.require_improvement:
        if after is None or before is None:
            return "quality gate: the job reported no eval loss before/after"
        if after >= before:
            return f"quality gate: eval loss did not improve ({before:.4f} -> {after:.4f})"
    return None


def approval_gate(record: RunRecord, config: TrainingConfig) -> Outcome | None:
    """A run that needs a person's approval waits for it (``Outcome()``: no write) or ends if it was rejected."""
    if config.deployment.approval != "manual":
        return None
    approval = record.approval
    if approval is None:
        log.info("run %s: registered, awaiting approval", record.run_id)
        return Outcome()
    if approval.decision == "rejected":
        message = f"rejected by {approval.by}: {approval.reason or 'no reason given'}"
        return Outcome(RunState.DEPLOY_FAILED, failure(message, "Rejected", "deployment.approval"))
    return None


def quality_gate(record: RunRecord, config: TrainingConfig) -> Outcome | None:
    """A run whose evaluation misses the config's quality gate is not deployed."""
    gate = quality_gate_failure(record, config)
    if gate:
        return Outcome(RunState.DEPLOY_FAILED, failure(gate, "QualityGate", "deployment.quality_gate"))
    return None


DeployGate = Callable[[RunRecord, TrainingConfig], Outcome | None]
# What a registered run passes before its deployment starts, in order: the first gate that returns an Outcome
# holds the run (``Outcome()``) or ends it; None lets it on to the next.
DEPLOY_GATES: tuple[DeployGate, ...] = (approval_gate, quality_gate)


def deploy(store: RunStore, platform: MLPlatform, run: RunRecord | str) -> RunRecord | None:
    """registered -> deploying: start endpoint + deployment creation, without waiting."""

    def act(record: RunRecord) -> Outcome | None:
        config = record.config
        if config is None or not config.deployment.enabled:
            log.info("run %s: deployment disabled; run ends registered", record.run_id)
            return None
        for gate in DEPLOY_GATES:
            held = gate(record, config)
            if held is not None:
                return held
        assert record.endpoint_name and record.deployment_name and record.model_name and record.model_version
        try:
            # Where the deployment goes: its own endpoint, or, as a canary, the endpoint another run serves.
            try:
                rollout = plan_join(store, platform, record, config)
            except CanaryRefused as exc:
                return Outcome(RunState.DEPLOY_FAILED, failure(str(exc), "CanaryRefused", "deployment.endpoint_name"))
            model = platform.get_model(record.model_name, record.model_version)
            platform.begin_deploy(deploy_request(dataclasses.replace(record, rollout=rollout), config, model))
            started.append(record.run_id)
        except TransientPlatformError:
            raise  # Event Grid (or the next reconcile) tries again
        except PlatformError as exc:
            # e.g. the endpoint name belongs to someone else, or quota refused at once: nothing was created.
            message = f"deployment could not start: {exc}"
            return Outcome(RunState.DEPLOY_FAILED, failure(message, exc.code or "DeploymentFailed", "deployment"))

        def keep_rollout(r: RunRecord) -> None:
            r.rollout = rollout

        return Outcome(RunState.DEPLOYING, keep_rollout)

    started: list[str] = []
    moved = guarded(store, run, RunState.REGISTERED, act)
    if moved is None and started and (now := store.get(started[0])) is not None and now.state == RunState.CANCELED:
        # Canceled while this endpoint was being started: nothing of a canceled run may stay up.
        remove_deployed(platform, now)
    return moved


def deploy_request(record: RunRecord, config: TrainingConfig, model: ModelRef) -> DeployRequest:
    assert record.endpoint_name and record.deployment_name
    dep = config.deployment
    tags = {
        **app_tags(record.run_id, record.config_blob),
        TAG_IDLE_MINUTES: str(config.cleanup.idle_after_minutes),
        TAG_KEEP: "true" if config.cleanup.keep else "false",
    }
    return DeployRequest(
        endpoint_name=record.endpoint_name,
        deployment_name=record.deployment_name,
        model=model,
        instance_type=record.inference_instance_type or dep.instance_type or "",
        instance_count=dep.instance_count,
        request_timeout_ms=dep.request_timeout_ms,
        liveness_initial_delay_s=dep.liveness_initial_delay_s,
        max_concurrent_requests=dep.max_concurrent_requests,
        description=f"Online endpoint for {model.name}:{model.version}, fine-tuned by Fine-tune Autopilot",
        tags=tags,
        join_endpoint=record.canary is not None,
    )
