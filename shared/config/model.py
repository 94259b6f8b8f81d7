"""The training config a user drops into storage: a strict pydantic model.

Every training field is optional and ``None`` means "not written": the effective value then comes from the
foundation model's ``model_specific_defaults`` or the app defaults (see ``params.py``), and the run records
where each value came from. Unknown keys are errors everywhere (``extra="forbid"``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from shared.config.component import TRAINING_INPUTS, optional_copy
from shared.scoring import MAX_MESSAGES, ChatMessage, ScoringParameters

# Azure ML online endpoint and deployment names: 3-32 chars, a letter first, no trailing hyphen.
ENDPOINT_NAME_RE = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
MAX_REQUEST_TIMEOUT_MS = 180_000
# Tag keys and values end up in Azure resource tags: keep them short and printable.
_TAG_KEY_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
_SKU_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CLUSTER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,31}$")

PositiveInt = Annotated[int, Field(ge=1)]


class Strict(BaseModel):
    """Base of every section: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _check_endpoint_like(value: str | None, what: str) -> str | None:
    if value is None:
        return value
    if not 3 <= len(value) <= 32 or not ENDPOINT_NAME_RE.match(value):
        raise ValueError(
            f"{what} must be 3-32 characters, start with a letter, contain only letters, digits and "
            f"hyphens, and not end with a hyphen (got {value!r})"
        )
    return value


class ModelSection(Strict):
    """The foundation model to fine-tune."""

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="Model name in the registry.",
    )
    version: str = Field(
        default="latest",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="A version, or `latest` for the registry's latest label.",
    )
    registry: str = Field(
        default="azureml",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Registry holding the model (Azure ML system registry `azureml`; ignored locally).",
    )


class DataSection(Strict):
    """Dataset files in the chat format (`messages` rows), as datastore URIs or paths under the data root."""

    train: str = Field(min_length=1, max_length=1024, description="Training split (jsonl).")
    validation: str | None = Field(default=None, min_length=1, max_length=1024, description="Validation split.")
    test: str | None = Field(default=None, min_length=1, max_length=1024, description="Test split (loss before/after).")

    @field_validator("train", "validation", "test")
    @classmethod
    def _no_traversal(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        if "://" not in value and not value.startswith("azureml:"):
            parts = re.split(r"[\\/]+", value)
            if ".." in parts:
                raise ValueError("a local path must not contain '..' (paths are resolved under the data root)")
        return value


class ComputeSection(Strict):
    """Where the fine-tune runs. `cluster: serverless` picks `instance_type`; otherwise a named cluster."""

    cluster: str = Field(
        default="serverless",
        description="Compute cluster name, `serverless`, or `local-cpu`/`local-cuda` locally.",
    )
    instance_type: str | None = Field(
        default=None,
        validate_default=True,
        description="SKU for serverless compute (e.g. Standard_NC24ads_A100_v4).",
    )
    nodes: PositiveInt | None = Field(default=None, le=64, description="num_nodes_finetune.")
    gpus_per_node: PositiveInt | Literal["auto"] = Field(
        default="auto", description="number_of_gpu_to_use_finetuning, or `auto` to read it from the SKU."
    )
    shm_size: str | None = Field(default=None, pattern=r"^[0-9]{1,4}[kmg]$", description="shm_size_finetune, e.g. 5g.")

    @field_validator("cluster")
    @classmethod
    def _cluster_name(cls, value: str) -> str:
        if value != "serverless" and not _CLUSTER_RE.match(value):
            raise ValueError("must be `serverless` or a cluster name of 2-32 letters, digits and hyphens")
        return value

    @field_validator("instance_type")
    @classmethod
    def _sku(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("cluster") == "serverless":
            raise ValueError("required when cluster is `serverless` (e.g. Standard_NC24ads_A100_v4)")
        if value is not None and not _SKU_RE.match(value):
            raise ValueError("must be an Azure VM SKU such as Standard_NC24ads_A100_v4")
        return value


# The component's training inputs, typed, once (``shared.config.component``): here each is optional, and an
# unset one falls back to the model's defaults, then the app's.
TrainingSection = optional_copy(
    "TrainingSection",
    Strict,
    TRAINING_INPUTS,
    "The component's training inputs, typed. Unset fields fall back to model defaults, then app defaults.",
)


class LoraSection(Strict):
    """Low-rank adaptation (peft)."""

    enabled: bool | None = Field(default=None, description="apply_lora")
    r: int | None = Field(default=None, ge=1, le=1024, description="lora_r")
    alpha: int | None = Field(default=None, ge=1, le=4096, description="lora_alpha")
    dropout: float | None = Field(default=None, ge=0, lt=1, description="lora_dropout")
    merge: bool | None = Field(default=None, description="merge_lora_weights")


class DeepSpeedSection(Strict):
    """DeepSpeed ZeRO (GPU only; reported as not applicable on the local CPU platform)."""

    enabled: bool | None = Field(default=None, description="apply_deepspeed")
    stage: Literal[2, 3] | None = Field(default=None, description="deepspeed_stage: 2 or 3")

    @field_validator("stage", mode="before")
    @classmethod
    def _stage_from_string(cls, value: Any) -> Any:
        # The component takes the stage as a string; accept "2"/"3" as written in its docs.
        if isinstance(value, str) and value.strip() in {"2", "3"}:
            return int(value)
        if value is not None and value not in (2, 3):
            raise ValueError("must be 2 or 3")
        return value


class OptimizationSection(Strict):
    """LoRA, DeepSpeed, precision and ONNX Runtime switches."""

    lora: LoraSection = Field(default_factory=LoraSection)
    deepspeed: DeepSpeedSection = Field(default_factory=DeepSpeedSection)
    precision: Literal["32", "16"] | None = Field(default=None, description="Training precision in bits.")
    ort: bool | None = Field(default=None, description="apply_ort")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class RegistrationSection(Strict):
    """How the fine-tuned model is registered."""

    model_name: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Registered model name; default `<foundation model>-<config name>`.",
    )
    description: str | None = Field(default=None, max_length=1000)
    tags: dict[str, str] = Field(default_factory=dict, description="Extra tags on the model version.")

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 30:
            raise ValueError("at most 30 tags")
        for key, val in value.items():
            if not _TAG_KEY_RE.match(key):
                raise ValueError(f"tag key {key!r} must be 1-128 letters, digits or _.:/-")
            if key.startswith(("autopilot.", "autopilot_")):
                raise ValueError(f"tag key {key!r} is reserved: the app sets autopilot_* tags itself")
            if len(val) > 256:
                raise ValueError(f"tag {key!r}: value longer than 256 characters")
        return value


class SmokeTestSection(Strict):
    """The request sent to the endpoint after deployment; a conversation or a row of a test file."""

    enabled: bool = True
    messages: list[ChatMessage] | None = Field(
        default=None, min_length=1, max_length=MAX_MESSAGES, description="The conversation to send."
    )
    sample_file: str | None = Field(default=None, max_length=1024, description="A test_gen jsonl; one row is sent.")
    sample_index: int = Field(default=0, ge=0, description="Which row of sample_file.")
    parameters: ScoringParameters = Field(default_factory=ScoringParameters)

    @model_validator(mode="after")
    def _one_source(self) -> SmokeTestSection:
        if self.messages is not None and self.sample_file is not None:
            raise ValueError("give either messages or sample_file, not both")
        if self.sample_file is not None and ("://" in self.sample_file or ".." in self.sample_file.split("/")):
            raise ValueError("sample_file must be a path under the data root (no URIs, no '..')")
        if self.messages is not None and self.messages[-1].role != "user":
            raise ValueError("messages must end with a user turn")
        return self


class QualityGate(Strict):
    """Optional: refuse to deploy a model whose evaluation is worse than this."""

    max_eval_loss: float | None = Field(default=None, gt=0)
    require_improvement: bool = Field(default=False, description="Eval loss after must be below eval loss before.")


class DeploymentSection(Strict):
    """The online endpoint and deployment."""

    enabled: bool = True
    endpoint_name: str | None = Field(default=None, description="Default: derived from the run id.")
    deployment_name: str | None = Field(default=None, description="Default: derived from the run id.")
    instance_type: str | None = Field(default=None, description="Inference SKU (local: local-cpu).")
    instance_count: int = Field(default=1, ge=1, le=20)
    request_timeout_ms: int = Field(default=90_000, ge=1, le=MAX_REQUEST_TIMEOUT_MS)
    liveness_initial_delay_s: int = Field(default=600, ge=0, le=3600)
    max_concurrent_requests: int = Field(default=1, ge=1, le=1000)
    smoke_test: SmokeTestSection = Field(default_factory=SmokeTestSection)
    quality_gate: QualityGate | None = None
    approval: Literal["auto", "manual"] = Field(
        default="auto",
        description="manual: the registered model waits for `autopilot approve RUN` (or `reject`) before deploying.",
    )

    # A run whose endpoint_name names an endpoint the app already serves from is a canary there.
    canary_percent: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Share of the traffic (percent) the new deployment gets while observed, when endpoint_name "
        "names an endpoint the app already serves an earlier run from.",
    )
    observe_minutes: float = Field(
        default=30,
        ge=0,
        le=24 * 60,
        description="How long the canary is observed (its error rate against the previous deployment's) "
        "before it gets all the traffic.",
    )
    max_error_rate_increase: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="The canary fails when its error rate (5xx or 424 answers / requests) exceeds the previous "
        "deployment's by more than this (0.05 = 5 points).",
    )
    grace_minutes: float = Field(
        default=60,
        ge=0,
        le=7 * 24 * 60,
        description="How long the previous deployment is kept, at 0% traffic, after a promotion: the window "
        "in which `autopilot rollback ENDPOINT` can bring it back.",
    )

    @field_validator("endpoint_name")
    @classmethod
    def _endpoint_name(cls, value: str | None) -> str | None:
        return _check_endpoint_like(value, "endpoint name")

    @field_validator("deployment_name")
    @classmethod
    def _deployment_name(cls, value: str | None) -> str | None:
        return _check_endpoint_like(value, "deployment name")

    @field_validator("instance_type")
    @classmethod
    def _sku(cls, value: str | None) -> str | None:
        if value is not None and not _SKU_RE.match(value):
            raise ValueError("must be an Azure VM SKU such as Standard_NC24ads_A100_v4, or local-cpu")
        return value


NotifyEvent = Literal[
    "completed", "failed", "canceled", "rejected", "awaiting_approval", "deployed", "deploy_failed", "deleted"
]
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


class NotifySection(Strict):
    """Who hears about the run: signed JSON POSTs to webhooks (see shared/notify.py) and CloudEvents 1.0 on an
    Event Grid custom topic (shared/notify_eventgrid.py)."""

    webhooks: list[str] = Field(default_factory=list, max_length=5, description="https URLs (http only on loopback).")
    event_grid_topic: str | None = Field(
        default=None,
        description="An Event Grid custom topic endpoint (https://<topic>.<region>-1.eventgrid.azure.net/api/events) "
        "that receives each event as a CloudEvent 1.0: one of the topics the app's setting AUTOPILOT_EVENT_GRID_TOPICS "
        "allows.",
    )
    events: list[NotifyEvent] | None = Field(default=None, description="Default: every event.")

    @field_validator("webhooks")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            _check_notify_url(url, "webhooks must be https URLs")
        return value

    @field_validator("event_grid_topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is not None:
            _check_notify_url(value, "the Event Grid topic must be an https URL")
        return value


def _check_notify_url(url: str, https_only: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if len(url) > 2048 or not parts.hostname:
        raise ValueError(f"{url[:80]!r} is not a URL")
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        raise ValueError(f"{https_only} (plain http only to 127.0.0.1 or localhost)")
    if parts.username or parts.password:
        raise ValueError("a notify URL carries no user name or password (keys go in the app settings)")


class CleanupSection(Strict):
    """When the idle endpoint is deleted."""

    idle_after_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    keep: bool = Field(default=False, description="Never delete this endpoint automatically.")


class ComponentSection(Strict):
    """The Azure ML pipeline component."""

    name: str = Field(default="chat_completion_pipeline", pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    version: str = Field(default="latest", pattern=r"^[A-Za-z0-9_.-]{1,64}$")


class TrainingConfig(Strict):
    """A fine-tuning run: model, data, compute, training, optimisation, registration, deployment, cleanup."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        allow_inf_nan=False,
        title="Fine-tune Autopilot training config",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    name: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9-]{0,39}$",
        description="Short name for the run (default: the config file's name).",
    )
    experiment_name: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Default: chat_completion_<model name>.",
    )
    model: ModelSection
    data: DataSection
    compute: ComputeSection
    training: TrainingSection = Field(default_factory=TrainingSection)  # type: ignore[valid-type]
    optimization: OptimizationSection = Field(default_factory=OptimizationSection)
    registration: RegistrationSection = Field(default_factory=RegistrationSection)
    deployment: DeploymentSection = Field(default_factory=DeploymentSection)
    cleanup: CleanupSection = Field(default_factory=CleanupSection)
    notify: NotifySection = Field(default_factory=NotifySection)
    component: ComponentSection = Field(default_factory=ComponentSection)
    dataset_label: str = Field(
        default="ultrachat",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="Dataset label in the pipeline display name (the seed writes `ultrachat`).",
    )
