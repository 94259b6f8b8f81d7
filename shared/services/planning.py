"""What a submit would do: resolve the model, check compute and data, merge parameters, build the job request.

Shared by the ``submit`` service and ``autopilot plan``, so the plan a user previews is the job that runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from shared.config.model import TrainingConfig
from shared.config.model_tags import (
    CHAT_FINETUNE_MODELS,
    CHAT_FINETUNE_MODELS_SOURCE,
    AllowList,
    Lifecycle,
    parse_model_defaults,
    read_allow_list,
    read_lifecycle,
)
from shared.config.params import EffectiveParams, resolve
from shared.exceptions import FieldIssue, ModelTagError, RejectedError
from shared.naming import app_tags, deployment_name, endpoint_name, model_name
from shared.notify_eventgrid import topic_issue
from shared.platform.port import (
    CapacityCheck,
    CapacityOutcome,
    CapacityRequest,
    ComputeInfo,
    ComputeRequest,
    FoundationModel,
    JobRequest,
    MLPlatform,
)
from shared.scoring import scoring_payload

DEFAULT_SMOKE_MESSAGES = [{"role": "user", "content": "Hello! In two sentences, what can you help me with?"}]


@dataclass(frozen=True)
class SubmissionPlan:
    run_id: str
    config: TrainingConfig
    foundation_model: FoundationModel
    compute: ComputeInfo
    params: EffectiveParams
    job: JobRequest
    model_name: str
    endpoint_name: str
    deployment_name: str
    inference_instance_type: str | None
    smoke_request: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    finetune_allow: AllowList | None = None
    inference_allow: AllowList | None = None
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    capacity: list[CapacityCheck] = field(default_factory=list)  # empty when AUTOPILOT_QUOTA_CHECK=off


def display_name(model: str, dataset_label: str, params: dict[str, Any], gpus_per_node: int) -> str:
    """The seed notebook's pipeline display name formula."""
    batch = (
        int(params.get("per_device_train_batch_size", 1))
        * int(params.get("gradient_accumulation_steps", 1))
        * int(gpus_per_node)
        * int(params.get("num_nodes_finetune", 1))
    )
    ds = f"ds{params.get('deepspeed_stage', 2)}" if params.get("apply_deepspeed") else "nods"
    lora = "lora" if params.get("apply_lora") else "nolora"
    return (
        f"{model}-{dataset_label}-bs{batch}-{params.get('lr_scheduler_type', 'linear')}-{ds}-{lora}"
        f"-save_limit{params.get('save_total_limit', -1)}-seqlen{params.get('max_seq_length', -1)}"
    )


def _read_sample(path: Path, index: int) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if i == index:
                row = json.loads(line)
                messages = row.get("messages") if isinstance(row, dict) else None
                if not isinstance(messages, list) or not messages:
                    raise ValueError(f"row {index} has no messages list")
                return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    raise ValueError(f"the file has fewer than {index + 1} rows")


def smoke_request(config: TrainingConfig, data_root: Path) -> dict[str, Any] | None:
    """The scoring payload sent after deployment, in the seed's format; None when the smoke test is off."""
    smoke = config.deployment.smoke_test
    if not config.deployment.enabled or not smoke.enabled:
        return None
    if smoke.messages is not None:
        messages = [m.model_dump() for m in smoke.messages]
    elif smoke.sample_file is not None:
        path = (data_root / smoke.sample_file).resolve()
        if not path.is_relative_to(data_root):
            raise RejectedError([FieldIssue("deployment.smoke_test.sample_file", "must be under the data root")])
        try:
            messages = _read_sample(path, smoke.sample_index)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RejectedError(
                [FieldIssue("deployment.smoke_test.sample_file", f"cannot read a test conversation: {exc}")]
            ) from None
    else:
        messages = list(DEFAULT_SMOKE_MESSAGES)
    # The seed sends test_gen rows whole; the answer is what we want generated, so trailing assistant
    # turns are dropped.
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    if not messages:
        raise RejectedError([FieldIssue("deployment.smoke_test", "the test conversation has no user turn")])
    return scoring_payload([messages], smoke.parameters.model_dump())


def build_plan(
    config: TrainingConfig,
    *,
    run_id: str,
    config_blob: str,
    config_name: str,
    platform: MLPlatform,
    data_root: Path,
    today: date | None = None,
    quota_check: str = "reject",
    event_grid_topics: frozenset[str] = frozenset(),
) -> SubmissionPlan:
    """Everything a submit needs, checked. Raises ``RejectedError`` listing every problem found.

    ``today`` (UTC, default now) is the day the model's lifecycle dates are compared with. ``quota_check``
    (``AUTOPILOT_QUOTA_CHECK``) is what a quota shortage does: ``reject`` the run, ``warn`` in its notes, or
    ``off`` (not checked). ``event_grid_topics`` are the topics a config may name (``allowed_topics`` of
    ``AUTOPILOT_EVENT_GRID_TOPICS``).
    """
    issues: list[FieldIssue] = []
    topic = topic_issue(config.notify.event_grid_topic, event_grid_topics)
    if topic is not None:
        issues.append(topic)
    notes: list[str] = []
    model = platform.get_foundation_model(config.model.name, config.model.version, config.model.registry)

    def tag_guard(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ModelTagError as exc:
            issues.extend(exc.issues)
            return None

    finetune_list: AllowList | None = tag_guard(read_allow_list, "finetune", model.tags, model.system_metadata)
    inference_list: AllowList | None = tag_guard(read_allow_list, "inference", model.tags, model.system_metadata)
    finetune_allow = finetune_list.skus if finetune_list else None
    inference_allow = inference_list.skus if inference_list else None
    for allow in (finetune_list, inference_list):
        if allow is not None and allow.skus is None and (allow.kind == "finetune" or config.deployment.enabled):
            fallback = "the seed's K80 deny list applies" if allow.kind == "finetune" else "any SKU is accepted"
            notes.append(f"warning: {allow.describe()}; {fallback}")
    lifecycle: Lifecycle = tag_guard(read_lifecycle, model.tags, model.system_metadata, model.archived) or Lifecycle()
    issues.extend(_lifecycle_issues(model, lifecycle, config, today or datetime.now(UTC).date(), notes))
    model_defaults = tag_guard(parse_model_defaults, model.tags) or {}
    params: EffectiveParams | None = None
    try:
        params = resolve(config, model_defaults)
    except ModelTagError as exc:
        issues.extend(exc.issues)
    if params is not None and params.ignored_model_defaults:
        notes.append(
            "model_specific_defaults keys that are no input of the fine-tune component, not applied: "
            + ", ".join(params.ignored_model_defaults)
        )

    compute: ComputeInfo | None = None
    gpus = None if config.compute.gpus_per_node == "auto" else int(config.compute.gpus_per_node)
    compute_request = ComputeRequest(
        config.compute.cluster, config.compute.instance_type, gpus, config.compute.nodes or 1
    )
    try:
        compute = platform.check_compute(compute_request, finetune_allow)
    except RejectedError as exc:
        issues.extend(_with_source(exc.issues, finetune_list))

    inference_sku: str | None = None
    if config.deployment.enabled:
        try:
            inference_sku = platform.check_inference_compute(config.deployment.instance_type or "", inference_allow)
        except RejectedError as exc:
            issues.extend(_with_source(exc.issues, inference_list))

    data_paths = {k: v for k, v in config.data.model_dump().items() if v is not None}
    resolved_data: dict[str, str] = {}
    try:
        resolved_data = platform.check_data(data_paths)
    except RejectedError as exc:
        issues.extend(exc.issues)

    if config.deployment.quality_gate is not None and not platform.reports_eval_metrics:
        issues.append(
            FieldIssue(
                "deployment.quality_gate",
                f"the {platform.name} platform reports no evaluation loss for a job, so a quality gate could "
                "never pass; remove it",
            )
        )

    smoke: dict[str, Any] | None = None
    try:
        smoke = smoke_request(config, data_root)
    except RejectedError as exc:
        issues.extend(exc.issues)

    capacity: list[CapacityCheck] = []
    if quota_check != "off" and compute is not None and not issues:
        # Only for a run that would otherwise be accepted: the quota calls are the last, and the costliest.
        request = CapacityRequest(compute_request, compute.size, inference_sku, config.deployment.instance_count)
        capacity = platform.check_capacity(request)
        issues.extend(_capacity_verdict(capacity, quota_check, notes))

    if issues or params is None or compute is None:
        raise RejectedError(issues)
    notes.extend(compute.notes)

    values = params.values()
    name_of_config = config.name or config_name
    tags = app_tags(run_id, config_blob)
    job = JobRequest(
        name=run_id,
        experiment_name=config.experiment_name or f"chat_completion_{config.model.name}".replace("/", "-"),
        display_name=display_name(config.model.name, config.dataset_label, values, compute.gpus_per_node),
        foundation_model=model,
        compute=compute,
        params=params.typed(),
        train_data=resolved_data["train"],
        validation_data=resolved_data.get("validation"),
        test_data=resolved_data.get("test"),
        tags=tags,
        component_name=config.component.name,
        component_version=config.component.version,
        instance_type=config.compute.instance_type,
    )
    return SubmissionPlan(
        run_id=run_id,
        config=config,
        foundation_model=model,
        compute=compute,
        params=params,
        job=job,
        model_name=config.registration.model_name or model_name(config.model.name, name_of_config),
        # A platform whose names must be unique beyond one workspace (Azure ML: per region) says so with a
        # ``name_scope``; the local platform has none and keeps the run's own hash.
        endpoint_name=config.deployment.endpoint_name or endpoint_name(run_id, getattr(platform, "name_scope", "")),
        deployment_name=config.deployment.deployment_name or deployment_name(run_id),
        inference_instance_type=inference_sku,
        smoke_request=smoke,
        notes=notes,
        finetune_allow=finetune_list,
        inference_allow=inference_list,
        lifecycle=lifecycle,
        capacity=capacity,
    )


def _capacity_verdict(checks: list[CapacityCheck], mode: str, notes: list[str]) -> list[FieldIssue]:
    """A shortage rejects (mode ``reject``) or warns; a busy quota or an unchecked one is a note either way."""
    issues: list[FieldIssue] = []
    for check in checks:
        if check.outcome == CapacityOutcome.SHORT and mode == "reject":
            issues.append(FieldIssue(check.path, f"{check.message} (AUTOPILOT_QUOTA_CHECK=reject)"))
        elif check.outcome == CapacityOutcome.SHORT:
            notes.append(f"warning: quota: {check.path}: {check.message}")
        elif check.outcome in (CapacityOutcome.BUSY, CapacityOutcome.UNKNOWN):
            notes.append(f"quota: {check.path}: {check.message}")
    return issues


def _with_source(issues: list[FieldIssue], allow: AllowList | None) -> list[FieldIssue]:
    """A refusal by an allow list says which list it was (system metadata or the tag of an older version)."""
    if allow is None or allow.skus is None:
        return list(issues)
    return [
        FieldIssue(i.path, f"{i.message} (from {allow.source})") if "allow list" in i.message else i for i in issues
    ]


def _lifecycle_issues(
    model: FoundationModel, lifecycle: Lifecycle, config: TrainingConfig, today: date, notes: list[str]
) -> list[FieldIssue]:
    """A retired model is refused (with its dates and what to use instead); a deprecated one is a warning."""
    issues: list[FieldIssue] = []
    label = f"{model.name} version {model.version}"
    if lifecycle.retired("finetune", today):
        offered = ", ".join(m for m in CHAT_FINETUNE_MODELS if m != model.name)
        issues.append(
            FieldIssue(
                "model.name",
                f"{label} is retired for fine-tuning: {lifecycle.describe('finetune')}; models offered for "
                f"chat-completion fine-tuning instead: {offered} (per {CHAT_FINETUNE_MODELS_SOURCE})",
            )
        )
    elif lifecycle.deprecated("finetune", today):
        notes.append(f"warning: {label} is deprecated for fine-tuning: {lifecycle.describe('finetune')}")
    if config.deployment.enabled and not lifecycle.retired("finetune", today):
        if lifecycle.retired("inference", today):
            issues.append(
                FieldIssue(
                    "deployment.enabled",
                    f"{label} is retired for inference, so the fine-tuned model cannot be deployed: "
                    f"{lifecycle.describe('inference')}",
                )
            )
        elif lifecycle.deprecated("inference", today):
            notes.append(f"warning: {label} is deprecated for inference: {lifecycle.describe('inference')}")
    return issues
