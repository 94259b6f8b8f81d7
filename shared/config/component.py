"""The fine-tune component's inputs, typed, once: ``ComponentParams``.

Everything else is derived from it: the config's ``training`` section (the same fields, each optional, so
that "not written" is visible), the app defaults, the parameters that cross the platform port, and the
local job's spec. Bounds written here hold for every layer of precedence (app, model, config).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo


def _not_zero(value: int) -> int:
    if value == 0:
        raise ValueError("must be -1 (no limit) or a positive number")
    return value


NoLimitOrPositive = Annotated[int, Field(ge=-1), AfterValidator(_not_zero)]
SchedulerType = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]


class ComponentParams(BaseModel):
    """Every tunable input of the fine-tune step, typed, with the component's own defaults."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    num_train_epochs: int = Field(default=1, ge=1, le=1000)
    max_steps: NoLimitOrPositive = Field(default=-1, description="-1 means: run the epochs.")
    per_device_train_batch_size: int = Field(default=1, ge=1, le=4096)
    per_device_eval_batch_size: int = Field(default=1, ge=1, le=4096)
    auto_find_batch_size: bool = False
    optim: Literal["adamw_torch", "adafactor"] = "adamw_torch"
    learning_rate: float = Field(default=2e-5, gt=0, le=1.0)
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0, le=1.0)
    adam_beta1: float = Field(default=0.9, ge=0, lt=1)
    adam_beta2: float = Field(default=0.999, ge=0, lt=1)
    adam_epsilon: float = Field(default=1e-8, gt=0, le=1.0)
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=4096)
    lr_scheduler_type: SchedulerType = "linear"
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    max_seq_length: NoLimitOrPositive = Field(default=-1, le=131072, description="-1 means the model's limit.")
    pad_to_max_length: bool = False
    evaluation_strategy: Literal["epoch", "steps", "disable"] = "epoch"
    eval_steps: int = Field(default=500, ge=1)
    logging_steps: int = Field(default=10, ge=1)
    save_total_limit: int = Field(default=-1, ge=-1)
    # Not an input of the Azure ML component (never sent to it, see params.LOCAL_ONLY): the local trainer's
    # checkpoint interval in optimizer steps, as in the Hugging Face Trainer.
    save_steps: int = Field(default=500, ge=1, description="Local platform: a checkpoint every N steps.")
    apply_early_stopping: bool = False
    early_stopping_patience: int = Field(default=1, ge=1)
    resume_from_checkpoint: bool = False
    # The remaining tunable inputs of the real chat_completion_pipeline 0.0.82 (types, enums, defaults and
    # bounds as its spec declares them; tests/fixtures/azureml/components/chat_completion_pipeline.spec.yaml).
    ignore_mismatched_sizes: bool = False
    trust_remote_code: bool = False
    enable_full_determinism: bool = False
    logging_strategy: Literal["epoch", "steps"] = "steps"
    metric_for_best_model: Literal["loss", "f1", "exact"] = "loss"
    early_stopping_threshold: float = 0.0
    evaluation_steps_interval: float = Field(default=0.0, ge=0)
    eval_accumulation_steps: int = Field(default=-1, ge=-1)
    dataloader_num_workers: int = Field(default=0, ge=0)
    batch_size: int = Field(default=1000, ge=1, description="rows per preprocessing batch")
    finetune_config_path: str | None = Field(
        default=None, description="a JSON file of extra fine-tune settings (azureml:// or https URI)"
    )
    # Set through the config's other sections (optimization, compute), not `training`.
    apply_lora: bool = False
    lora_r: int = Field(default=8, ge=1, le=1024)
    lora_alpha: int = Field(default=128, ge=1, le=4096)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    merge_lora_weights: bool = True
    apply_deepspeed: bool = False
    deepspeed_stage: Literal[2, 3] = 2
    precision: Literal["32", "16"] = "32"
    apply_ort: bool = False
    num_nodes_finetune: int = Field(default=1, ge=1, le=64)
    shm_size_finetune: str = "5g"


# Inputs the config sets in sections of their own (``optimization``, ``compute``), with their own names.
SET_ELSEWHERE = frozenset(
    {
        "apply_lora",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "merge_lora_weights",
        "apply_deepspeed",
        "deepspeed_stage",
        "precision",
        "apply_ort",
        "num_nodes_finetune",
        "shm_size_finetune",
    }
)
TRAINING_INPUTS: tuple[str, ...] = tuple(name for name in ComponentParams.model_fields if name not in SET_ELSEWHERE)


def optional_copy(name: str, base: type[BaseModel], fields: tuple[str, ...], doc: str) -> type[BaseModel]:
    """A model with ``fields`` of ``ComponentParams``, each ``None`` unless written, with the same bounds."""
    definitions: dict[str, Any] = {}
    for field_name in fields:
        info = ComponentParams.model_fields[field_name]
        constrained: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        definitions[field_name] = (constrained | None, FieldInfo(default=None, description=info.description))
    model: type[BaseModel] = create_model(name, __base__=base, __doc__=doc, __module__=base.__module__, **definitions)
    return model
