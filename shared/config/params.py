"""Effective fine-tuning parameters and where each came from.

Precedence: app defaults < the foundation model's ``model_specific_defaults`` < values written in the config.
(The seed notebook lets the model's defaults override what the user wrote; a value someone wrote down on
purpose should win, so the config is last.) Parameter names are the pipeline component's input names, so
the same flat mapping feeds the Azure ML component and the local trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.config.model import TrainingConfig
from shared.exceptions import FieldIssue, ModelTagError

Source = Literal["default", "model", "config"]


class ComponentParams(BaseModel):
    """Every tunable input of the fine-tune step, typed, with the component's own defaults."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    num_train_epochs: int = Field(default=1, ge=1)
    max_steps: int = Field(default=-1, ge=-1)
    per_device_train_batch_size: int = Field(default=1, ge=1)
    per_device_eval_batch_size: int = Field(default=1, ge=1)
    auto_find_batch_size: bool = False
    optim: Literal["adamw_torch", "adafactor"] = "adamw_torch"
    learning_rate: float = Field(default=2e-5, gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    adam_beta1: float = Field(default=0.9, ge=0, lt=1)
    adam_beta2: float = Field(default=0.999, ge=0, lt=1)
    adam_epsilon: float = Field(default=1e-8, gt=0)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    lr_scheduler_type: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
    ] = "linear"
    seed: int = Field(default=42, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    max_seq_length: int = Field(default=-1, ge=-1)
    pad_to_max_length: bool = False
    evaluation_strategy: Literal["epoch", "steps", "disable"] = "epoch"
    eval_steps: int = Field(default=500, ge=1)
    logging_steps: int = Field(default=10, ge=1)
    save_total_limit: int = Field(default=-1, ge=-1)
    # Not an input of the Azure ML component (its node drops undeclared inputs): the local trainer's
    # checkpoint interval, in optimizer steps, as in the Hugging Face Trainer (default 500).
    save_steps: int = Field(default=500, ge=1)
    # A real component input; None: the config did not ask, so the last weights are the model.
    metric_for_best_model: Literal["loss", "f1", "exact"] | None = None
    apply_early_stopping: bool = False
    early_stopping_patience: int = Field(default=1, ge=1)
    resume_from_checkpoint: bool = False
    apply_lora: bool = False
    lora_r: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=128, ge=1)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    merge_lora_weights: bool = True
    apply_deepspeed: bool = False
    deepspeed_stage: Literal[2, 3] = 2
    precision: Literal["32", "16"] = "32"
    apply_ort: bool = False
    num_nodes_finetune: int = Field(default=1, ge=1)
    shm_size_finetune: str = "5g"


APP_DEFAULTS: dict[str, Any] = ComponentParams().model_dump()
# Parameters only the local trainer reads: never sent to the Azure ML component (it has no such input).
LOCAL_ONLY = frozenset({"save_steps"})


def config_values(config: TrainingConfig) -> dict[str, Any]:
    """The parameters the config writes explicitly, under their component input names."""
    written: dict[str, Any] = {k: v for k, v in config.training.model_dump().items() if v is not None}
    opt = config.optimization
    mapping = {
        "apply_lora": opt.lora.enabled,
        "lora_r": opt.lora.r,
        "lora_alpha": opt.lora.alpha,
        "lora_dropout": opt.lora.dropout,
        "merge_lora_weights": opt.lora.merge,
        "apply_deepspeed": opt.deepspeed.enabled,
        "deepspeed_stage": opt.deepspeed.stage,
        "precision": opt.precision,
        "apply_ort": opt.ort,
        "num_nodes_finetune": config.compute.nodes,
        "shm_size_finetune": config.compute.shm_size,
    }
    written.update({k: v for k, v in mapping.items() if v is not None})
    return written


@dataclass(frozen=True)
class Param:
    """One effective parameter: its value and which layer set it."""

    value: Any
    source: Source


@dataclass(frozen=True)
class EffectiveParams:
    """The merged parameters, their provenance, and model defaults that were not applied."""

    params: dict[str, Param]
    ignored_model_defaults: tuple[str, ...] = ()

    def values(self) -> dict[str, Any]:
        return {k: p.value for k, p in self.params.items()}

    def typed(self) -> ComponentParams:
        return ComponentParams.model_validate(self.values())

    def to_record(self) -> dict[str, dict[str, Any]]:
        """JSON-ready form stored on the run: ``{name: {"value": v, "source": s}}``."""
        return {k: {"value": p.value, "source": p.source} for k, p in sorted(self.params.items())}

    @classmethod
    def from_record(cls, record: dict[str, dict[str, Any]]) -> EffectiveParams:
        return cls({k: Param(v["value"], v["source"]) for k, v in record.items()})


def _coerce_model_defaults(raw: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Type the model's defaults (tags hold strings such as "true") against the component inputs."""
    known = {k: v for k, v in raw.items() if k in ComponentParams.model_fields}
    ignored = tuple(sorted(k for k in raw if k not in ComponentParams.model_fields))
    if isinstance(known.get("deepspeed_stage"), str) and known["deepspeed_stage"].strip() in {"2", "3"}:
        known["deepspeed_stage"] = int(known["deepspeed_stage"])
    if isinstance(known.get("precision"), int):
        known["precision"] = str(known["precision"])
    try:
        typed = ComponentParams.model_validate({**APP_DEFAULTS, **known})
    except ValidationError as exc:
        issues = [
            FieldIssue(
                "model.model_specific_defaults." + ".".join(str(p) for p in err["loc"]),
                f"{err['msg']} (the foundation model's default is unusable)",
            )
            for err in exc.errors()
        ]
        raise ModelTagError(issues) from None
    dumped = typed.model_dump()
    return {k: dumped[k] for k in known}, ignored


def resolve(config: TrainingConfig, model_defaults: dict[str, Any] | None) -> EffectiveParams:
    """Merge app defaults, model defaults and the config, keeping the source of every value."""
    typed_model, ignored = _coerce_model_defaults(model_defaults or {})
    params = {k: Param(v, "default") for k, v in APP_DEFAULTS.items()}
    params.update({k: Param(v, "model") for k, v in typed_model.items()})
    params.update({k: Param(v, "config") for k, v in config_values(config).items()})
    # One more pass through the typed model: catches combinations a single layer cannot see.
    ComponentParams.model_validate({k: p.value for k, p in params.items()})
    return EffectiveParams(params, ignored)


def as_component_inputs(values: dict[str, Any]) -> dict[str, str | int | float]:
    """The component's wire types: booleans as "true"/"false", the DeepSpeed stage and precision as strings."""
    out: dict[str, str | int | float] = {}
    for key, value in values.items():
        if value is None or key in LOCAL_ONLY:  # unset optional input: the component's own default applies
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif key in {"deepspeed_stage", "precision"}:
            out[key] = str(value)
        else:
            out[key] = value
    return out
