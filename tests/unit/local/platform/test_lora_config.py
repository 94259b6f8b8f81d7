"""The one mapping from the component's flat LoRA parameters to peft."""

from __future__ import annotations

from local.platform.training.lora import ATTENTION_PROJECTIONS, lora_config
from shared.config.params import ComponentParams


def test_flat_params_map_to_lora_config() -> None:
    params = ComponentParams(apply_lora=True, lora_r=16, lora_alpha=32, lora_dropout=0.05)
    config = lora_config(params, "llama")
    assert config.r == 16
    assert config.lora_alpha == 32
    assert config.lora_dropout == 0.05
    assert config.target_modules is not None
    assert set(config.target_modules) == set(ATTENTION_PROJECTIONS)
    assert config.task_type == "CAUSAL_LM"


def test_other_architectures_use_peft_defaults() -> None:
    assert lora_config(ComponentParams(), "gpt2").target_modules is None
