"""What a submit would do: resolve the model, check compute and data, merge parameters, build the job request.

Shared by the ``submit`` service and ``autopilot plan``, so the plan a user previews is the job that runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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
from shared.notify_http import webhook_issues
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


@dataclass
class _Findings:
    """What the checks of one plan found: every problem (on its field) and the notes the run will carry."""

    issues: list[FieldIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def tagged(self, read: Callable[..., Any], *args: Any) -> Any:
        """``read`` (a reader of the model's tags); a tag it cannot parse is one more problem, and None."""
        try:
            return read(*args)
        except ModelTagError as exc:
            self.issues.extend(exc.issues)
            return None


@dataclass(frozen=True)
class _ModelTerms:
    """What the foundation model's tags and metadata say for this config."""

    finetune_allow: AllowList | None
    inference_allow: AllowList | None
    lifecycle: Lifecycle
    params: EffectiveParams | None


def _model_terms(config: TrainingConfig, model: FoundationModel, today: date, found: _Findings) -> _ModelTerms:
    """The model's allow lists, lifecycle and default parameters, merged with the config's."""
    finetune_list: AllowList | None = found.tagged(read_allow_list, "finetune", model.tags, model.system_metadata)
    inference_list: AllowList | None = found.tagged(read_allow_list, "inference", model.tags, model.system_metadata)
    for allow in (finetune_list, inference_list):
        if allow is not None and allow.skus is None and (allow.kind == "finetune" or config.deployment.enabled):
            fallback = "the seed's K80 deny list applies" if allow.kind == "finetune" else "any SKU is accepted"
            found.notes.append(f"warning: {allow.describe()}; {fallback}")
    lifecycle = found.tagged(read_lifecycle, model.tags, model.system_metadata, model.archived) or Lifecycle()
    found.issues.extend(_lifecycle_issues(model, lifecycle, config, today, found.notes))
    model_defaults = found.tagged(parse_model_defaults, model.tags) or {}
    params: EffectiveParams | None = None
    try:
        params = resolve(config, model_defaults)
    except ModelTagError as exc:
        found.issues.extend(exc.issues)
    if params is not None and params.ignored_model_defaults:
        found.notes.append(
            "model_specific_defaults keys that are no input of the fine-tune component, not applied: "
            + ", ".join(params.ignored_model_defaults)
        )
    return _ModelTerms(finetune_list, inference_list, lifecycle, params)


@dataclass(frozen=True)
class _Resources:
    """The compute, inference SKU and data the platform accepted (None / empty where it refused)."""

    compute_request: ComputeRequest
    compute: ComputeInfo | None
    inference_sku: str | None
    data: dict[str, str]


def _resources(config: TrainingConfig, platform: MLPlatform, terms: _ModelTerms, found: _Findings) -> _Resources:
    """The platform's checks of the compute, the inference SKU and the data inputs."""
    finetune_allow = terms.finetune_allow.skus if terms.finetune_allow else None
    inference_allow = terms.inference_allow.skus if terms.inference_allow else None
    gpus = None if config.compute.gpus_per_node == "auto" else int(config.compute.gpus_per_node)
    request = ComputeRequest(config.compute.cluster, config.compute.instance_type, gpus, config.compute.nodes or 1)
    compute: ComputeInfo | None = None
    try:
        compute = platform.check_compute(request, finetune_allow)
    except RejectedError as exc:
        found.issues.extend(_with_source(exc.issues, terms.finetune_allow))
    inference_sku: str | None = None
    if config.deployment.enabled:
        try:
            inference_sku = platform.check_inference_compute(config.deployment.instance_type or "", inference_allow)
        except RejectedError as exc:
            found.issues.extend(_with_source(exc.issues, terms.inference_allow))
    data_paths = {k: v for k, v in config.data.model_dump().items() if v is not None}
    data: dict[str, str] = {}
    try:
        data = platform.check_data(data_paths)
    except RejectedError as exc:
        found.issues.extend(exc.issues)
    return _Resources(request, compute, inference_sku, data)


def _job_request(
    config: TrainingConfig,
    run_id: str,
    config_blob: str,
    model: FoundationModel,
    compute: ComputeInfo,
    params: EffectiveParams,
    resources: _Resources,
) -> JobRequest:
    return JobRequest(
        name=run_id,
        experiment_name=config.experiment_name or f"chat_completion_{config.model.name}".replace("/", "-"),
        display_name=display_name(config.model.name, config.dataset_label, params.values(), compute.gpus_per_node),
        foundation_model=model,
        compute=compute,
        params=params.typed(),
        train_data=resources.data["train"],
        validation_data=resources.data.get("validation"),
        test_data=resources.data.get("test"),
        tags=app_tags(run_id, config_blob),
        component_name=config.component.name,
        component_version=config.component.version,
        instance_type=config.compute.instance_type,
    )


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
    notify_allow_private: bool = False,
) -> SubmissionPlan:
    """Everything a submit needs, checked. Raises ``RejectedError`` listing every problem found.

    ``today`` (UTC, default now) is the day the model's lifecycle dates are compared with. ``quota_check``
    (``AUTOPILOT_QUOTA_CHECK``) is what a quota shortage does: ``reject`` the run, ``warn`` in its notes, or
    ``off`` (not checked). ``event_grid_topics`` are the topics a config may name (``allowed_topics`` of
    ``AUTOPILOT_EVENT_GRID_TOPICS``). ``notify_allow_private`` (``AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES``)
    lets webhooks lead to loopback and private addresses.
    """
    found = _Findings()
    topic = topic_issue(config.notify.event_grid_topic, event_grid_topics)
    if topic is not None:
        found.issues.append(topic)
    found.issues.extend(webhook_issues(config.notify.webhooks, allow_private=notify_allow_private))
    model = platform.get_foundation_model(config.model.name, config.model.version, config.model.registry)
    terms = _model_terms(config, model, today or datetime.now(UTC).date(), found)
    resources = _resources(config, platform, terms, found)
    if config.deployment.quality_gate is not None and not platform.reports_eval_metrics:
        found.issues.append(
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
        found.issues.extend(exc.issues)

    compute, params = resources.compute, terms.params
    capacity: list[CapacityCheck] = []
    if quota_check != "off" and compute is not None and not found.issues:
        # Only for a run that would otherwise be accepted: the quota calls are the last, and the costliest.
        request = CapacityRequest(
            resources.compute_request, compute.size, resources.inference_sku, config.deployment.instance_count
        )
        capacity = platform.check_capacity(request)
        found.issues.extend(_capacity_verdict(capacity, quota_check, found.notes))
    if found.issues or params is None or compute is None:
        raise RejectedError(found.issues)
    found.notes.extend(compute.notes)

    job = _job_request(config, run_id, config_blob, model, compute, params, resources)
    return SubmissionPlan(
        run_id=run_id,
        config=config,
        foundation_model=model,
        compute=compute,
        params=params,
        job=job,
        model_name=config.registration.model_name or model_name(config.model.name, config.name or config_name),
        endpoint_name=config.deployment.endpoint_name or endpoint_name(run_id, platform.name_scope),
        deployment_name=config.deployment.deployment_name or deployment_name(run_id),
        inference_instance_type=resources.inference_sku,
        smoke_request=smoke,
        notes=found.notes,
        finetune_allow=terms.finetune_allow,
        inference_allow=terms.inference_allow,
        lifecycle=terms.lifecycle,
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
