"""The component's flat LoRA parameters -> peft, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peft import LoraConfig, get_peft_model

from local.platform.training.dropout import seed_lora_dropout
from shared.config.params import ComponentParams

# Attention projections of Llama-family models (SmolLM2, the tiny test model, Mistral, Qwen2, Phi-3 mini's
# unfused cousins): what the Azure ML component targets for these architectures.
ATTENTION_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj"]
LLAMA_FAMILY = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2"}


def lora_config(params: ComponentParams, model_type: str) -> LoraConfig:
    """``apply_lora``'s companions (``lora_r``, ``lora_alpha``, ``lora_dropout``) as a peft ``LoraConfig``."""
    return LoraConfig(
        r=params.lora_r,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        # Other architectures: peft's own per-architecture defaults.
        target_modules=ATTENTION_PROJECTIONS if model_type in LLAMA_FAMILY else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def with_lora(model: Any, params: ComponentParams) -> Any:
    """The model wrapped with fresh LoRA adapters; only the adapters are trainable, and they are fp32 whatever
    the frozen base's dtype: in bf16 (8 bits of mantissa) an update smaller than 1/256 of a weight is lost.
    LoRA dropout is ``dropout.SeededDropout``."""
    wrapped = get_peft_model(model, lora_config(params, model.config.model_type), autocast_adapter_dtype=True)
    seed_lora_dropout(wrapped)  # masks from (seed, step, conversation): every training stream may use dropout
    for parameter in wrapped.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return wrapped


def merged_in_fp32(trained: Any, base_dir: Path) -> Any:
    """The trained adapters merged into a fresh fp32 copy of the base, read from ``base_dir``.

    Merging into the base the adapters were trained on would round every update to that base's dtype; from
    the fp32 original, the merged weights are exactly base + B @ A * scale, and adapted logits match."""
    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    fresh = get_peft_model(base, trained.peft_config["default"])
    set_peft_model_state_dict(fresh, get_peft_model_state_dict(trained))
    return fresh.merge_and_unload()
