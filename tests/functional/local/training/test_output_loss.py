"""The fused output layer and loss give the numbers the model's own head gives: loss, label count, accuracy
and every trainable gradient, in fp32 and in bf16 (as training runs, under autocast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from local.platform.training import loop, output_loss
from local.platform.training.data import pack, read_conversations, tokenize_split
from local.platform.training.lora import with_lora
from shared.config.params import ComponentParams


@pytest.fixture(scope="module")
def batch(tokenizer: Any, small_data: dict[str, Path]) -> dict[str, torch.Tensor]:
    conversations = read_conversations(small_data["train_sft"], training=True)[:4]
    return pack(tokenize_split("train", tokenizer, conversations, 256).examples)


def lora_model(model_dir: Path, dtype: torch.dtype) -> Any:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    model = with_lora(model, ComponentParams(apply_lora=True, lora_r=4, lora_alpha=8))
    for name, parameter in model.named_parameters():  # B starts at zero: give it values so A's gradient is real
        if "lora_B" in name:
            parameter.data.normal_(0, 0.02)
    return model


def loss_and_grads(model: Any, batch: dict[str, torch.Tensor], dtype: torch.dtype, fused: bool) -> tuple[Any, ...]:
    original = loop.FUSED_OUTPUT_LOSS
    loop.FUSED_OUTPUT_LOSS = fused
    try:
        model.zero_grad(set_to_none=True)
        with loop.compute_precision(model, torch.device("cpu"), dtype):
            loss, count, correct = loop.token_loss_sum(model, batch)
        loss.backward()
    finally:
        loop.FUSED_OUTPUT_LOSS = original
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(loss.detach()), count, correct, grads


@pytest.mark.parametrize("chunk_rows", [16, output_loss.CHUNK_ROWS], ids=["many-chunks", "default-chunks"])
@pytest.mark.parametrize(
    ("dtype", "rtol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)], ids=["float32", "bfloat16"]
)
def test_fused_loss_matches_the_models_head(
    tiny_model_dir: Path,
    batch: dict[str, torch.Tensor],
    dtype: torch.dtype,
    rtol: float,
    chunk_rows: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(output_loss, "CHUNK_ROWS", chunk_rows)
    assert int((batch["labels"] != -100).sum()) > 2 * 16  # several chunks of 16 rows
    model = lora_model(tiny_model_dir, dtype)
    assert output_loss.plain_head(model) is not None  # the fused path is the one under test
    fused = loss_and_grads(model, batch, dtype, fused=True)
    stock = loss_and_grads(model, batch, dtype, fused=False)
    assert fused[0] == pytest.approx(stock[0], rel=rtol)
    assert fused[1] == stock[1] == int((batch["labels"][:, 1:] != -100).sum())
    assert abs(fused[2] - stock[2]) <= max(1, stock[1] // 100)  # ties in bf16 may break either way
    assert fused[3].keys() == stock[3].keys() and fused[3]
    for name, grad in stock[3].items():
        assert bool(grad.abs().sum() > 0), name
        torch.testing.assert_close(fused[3][name], grad, rtol=rtol, atol=rtol * float(grad.abs().max()))


def test_fused_loss_without_gradients_is_the_same_loss(tiny_model_dir: Path, batch: dict[str, torch.Tensor]) -> None:
    model = lora_model(tiny_model_dir, torch.float32)
    with torch.inference_mode():
        loss, count, correct = loop.token_loss_sum(model, batch)
    stock = loss_and_grads(model, batch, torch.float32, fused=False)
    assert (float(loss), count, correct) == (pytest.approx(stock[0], rel=1e-5), stock[1], stock[2])


def test_the_models_own_head_is_used_where_it_is_trained_or_not_plain(tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert output_loss.plain_head(model) is None  # full fine-tuning: the head (tied embeddings) is trained
    model.requires_grad_(False)
    assert output_loss.plain_head(model) is not None
    model.config.model_type = "gemma2"  # soft-capped logits
    assert output_loss.plain_head(model) is None
