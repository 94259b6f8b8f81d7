"""The component's flat LoRA parameters -> peft, in one place."""

from __future__ import annotations

from typing import Any

from peft import LoraConfig, get_peft_model

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
    """The model wrapped with fresh LoRA adapters; only the adapters are trainable."""
    return get_peft_model(model, lora_config(params, model.config.model_type))
