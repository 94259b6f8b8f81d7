"""The optimisation loop on LoRA adapters: every trainable parameter moves, frozen weights do not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from local.platform.training.data import read_conversations, tokenize_split
from local.platform.training.loop import evaluate, train
from local.platform.training.lora import with_lora
from shared.config.params import ComponentParams


def test_every_lora_parameter_changes_and_nothing_else(
    tiny_model_dir: Path, tokenizer: Any, small_data: dict[str, Path]
) -> None:
    params = ComponentParams(apply_lora=True, lora_r=4, lora_alpha=8, learning_rate=1e-2, max_steps=3, logging_steps=1)
    torch.manual_seed(0)
    model = with_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), params)
    examples = tokenize_split(
        "train", tokenizer, read_conversations(small_data["train_sft"], training=True), 256
    ).examples
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)

    logged: list[dict[str, float]] = []
    stats = train(
        model, examples, params, pad_token_id=tokenizer.pad_token_id, device=torch.device("cpu"), on_log=logged.append
    )

    assert stats.steps == 3 and [e["step"] for e in logged] == [1.0, 2.0, 3.0]
    after = dict(model.named_parameters())
    unchanged = [n for n in trainable if torch.equal(before[n], after[n])]
    assert not unchanged, f"trainable parameters that did not move: {unchanged}"
    moved_frozen = [n for n in before if n not in trainable and not torch.equal(before[n], after[n])]
    assert not moved_frozen


def test_training_lowers_the_loss_on_what_it_saw(
    tiny_model_dir: Path, tokenizer: Any, small_data: dict[str, Path]
) -> None:
    params = ComponentParams(
        apply_lora=True, lora_r=8, lora_alpha=16, learning_rate=2e-2, max_steps=12, logging_steps=4
    )
    torch.manual_seed(0)
    model = with_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), params)
    examples = tokenize_split(
        "train", tokenizer, read_conversations(small_data["train_sft"], training=True)[:4], 256
    ).examples
    device = torch.device("cpu")
    before = evaluate(model, examples, device)
    train(model, examples, params, pad_token_id=tokenizer.pad_token_id, device=device, on_log=lambda e: None)
    after = evaluate(model, examples, device)
    assert after.loss < before.loss - 0.1  # a random two-layer model: attention adapters move it slowly
    assert before.tokens == after.tokens > 0
