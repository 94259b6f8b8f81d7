"""Effective fine-tuning parameters and where each came from.

Precedence: app defaults < the foundation model's ``model_specific_defaults`` < values written in the config.
(The seed notebook lets the model's defaults override what the user wrote; a value someone wrote down on
purpose should win, so the config is last.) Parameter names are the pipeline component's input names, so
the same flat mapping feeds the Azure ML component and the local trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["APP_DEFAULTS", "ComponentParams", "EffectiveParams", "Param", "resolve"]

from pydantic import BaseModel, ValidationError

from shared.config.component import ComponentParams
from shared.config.model import TrainingConfig
from shared.exceptions import FieldIssue, ModelTagError

Source = Literal["default", "model", "config"]


APP_DEFAULTS: dict[str, Any] = ComponentParams().model_dump()
# Parameters only the local trainer reads: never sent to the Azure ML component (it has no such input).
LOCAL_ONLY = frozenset({"save_steps"})


# Where the config writes each input set outside ``training`` (the rest are ``training.<input name>``).
CONFIG_PATHS = {
    "apply_lora": "optimization.lora.enabled",
    "lora_r": "optimization.lora.r",
    "lora_alpha": "optimization.lora.alpha",
    "lora_dropout": "optimization.lora.dropout",
    "merge_lora_weights": "optimization.lora.merge",
    "apply_deepspeed": "optimization.deepspeed.enabled",
    "deepspeed_stage": "optimization.deepspeed.stage",
    "precision": "optimization.precision",
    "apply_ort": "optimization.ort",
    "num_nodes_finetune": "compute.nodes",
    "shm_size_finetune": "compute.shm_size",
}


def config_path(name: str) -> str:
    """The config field that sets component input ``name``."""
    return CONFIG_PATHS.get(name, f"training.{name}")


def config_values(config: TrainingConfig) -> dict[str, Any]:
    """The parameters the config writes explicitly, under their component input names."""
    training: BaseModel = config.training  # a model derived from ComponentParams (see config/component.py)
    written: dict[str, Any] = {k: v for k, v in training.model_dump().items() if v is not None}
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
        """The values as the component's typed inputs: what crosses the platform port."""
        return ComponentParams.model_validate(self.values())

    def to_record(self) -> dict[str, dict[str, Any]]:
        """JSON-ready form stored on the run: ``{name: {"value": v, "source": s}}``."""
        return {k: {"value": p.value, "source": p.source} for k, p in sorted(self.params.items())}


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
    """The component's wire types: booleans as "true"/"false", the DeepSpeed stage and precision as strings.

    Optional inputs left unset (``None``) are not sent: the component's own default applies.
    """
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
