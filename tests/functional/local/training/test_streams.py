"""Training on several streams (rows of a micro-batch at once, streams.py) ends where one stream does: the
same gradients summed (fp32: to rounding; bf16: to bf16's), and the same result on every run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from local.platform.training import streams
from local.platform.training.data import read_conversations, tokenize_split
from local.platform.training.loop import train
from local.platform.training.lora import with_lora
from shared.config.params import ComponentParams


def trained(
    model_dir: Path, examples: list[Any], pad_token_id: int, dtype: torch.dtype, count: str, monkeypatch: Any
) -> tuple[dict[str, torch.Tensor], list[float]]:
    monkeypatch.setenv(streams.STREAMS_SETTING, count)
    params = ComponentParams(
        apply_lora=True,
        lora_r=4,
        lora_alpha=8,
        learning_rate=1e-2,
        max_steps=4,
        logging_steps=1,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
    )
    torch.manual_seed(0)
    model = with_lora(AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype), params)
    losses: list[float] = []
    train(
        model,
        examples,
        params,
        pad_token_id=pad_token_id,
        device=torch.device("cpu"),
        on_log=lambda e: losses.append(e["loss"]),
        compute_dtype=dtype,
    )
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}, losses


@pytest.fixture(scope="module")
def examples(tokenizer: Any, small_data: dict[str, Path]) -> list[Any]:
    return tokenize_split("train", tokenizer, read_conversations(small_data["train_sft"], training=True), 256).examples


def test_two_streams_train_to_the_weights_of_one(
    tiny_model_dir: Path, tokenizer: Any, examples: list[Any], monkeypatch: Any
) -> None:
    """fp32, four Adam steps: equal to rounding. (In bf16 Adam turns rounding differences of near-zero
    gradients into whole learning-rate steps, so bf16 is compared on the gradients, below.)"""
    one, one_losses = trained(tiny_model_dir, examples, tokenizer.pad_token_id, torch.float32, "1", monkeypatch)
    two, two_losses = trained(tiny_model_dir, examples, tokenizer.pad_token_id, torch.float32, "2", monkeypatch)
    assert two_losses == pytest.approx(one_losses, rel=1e-5)
    assert one.keys() == two.keys() and one
    start = with_lora_start(tiny_model_dir, torch.float32)
    for name, weight in one.items():
        assert not torch.equal(weight, start[name]), name  # trained: the comparison below means something
        torch.testing.assert_close(two[name], weight, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "rtol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)], ids=["float32", "bfloat16"]
)
def test_a_micro_batch_on_two_streams_has_the_gradients_of_one_row(
    tiny_model_dir: Path, examples: list[Any], dtype: torch.dtype, rtol: float
) -> None:
    from local.platform.training import loop
    from local.platform.training.data import pack

    params = ComponentParams(apply_lora=True, lora_r=4, lora_alpha=8)
    model = with_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype), params)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for name, parameter in model.named_parameters():  # B starts at zero: give it values so A's gradient is real
        if "lora_B" in name:
            parameter.data.normal_(0, 0.02)
    batch = examples[:4]
    groups = streams.split_balanced([len(e.input_ids) for e in batch], 2)
    assert len(groups) == 2
    device = torch.device("cpu")
    results = []
    for rows, pool in (([pack(batch)], None), ([pack([batch[i] for i in g]) for g in groups], streams.StreamPool(2))):
        model.zero_grad(set_to_none=True)
        summary = loop._accumulate_gradients(model, [[loop.Row(r) for r in rows]], device, dtype, pool, trainable)
        results.append((summary, [p.grad.clone() for p in trainable]))
        if pool is not None:
            pool.close()
    (one, one_grads), (two, two_grads) = results
    assert two[0] == pytest.approx(one[0], rel=rtol) and two[1:3] == one[1:3]
    for a, b in zip(one_grads, two_grads, strict=True):
        assert bool(a.abs().sum() > 0)
        torch.testing.assert_close(b, a, rtol=rtol, atol=rtol * float(a.abs().max()))


def test_two_streams_give_the_same_weights_on_every_run(
    tiny_model_dir: Path, tokenizer: Any, examples: list[Any], monkeypatch: Any
) -> None:
    first, _ = trained(tiny_model_dir, examples, tokenizer.pad_token_id, torch.bfloat16, "2", monkeypatch)
    again, _ = trained(tiny_model_dir, examples, tokenizer.pad_token_id, torch.bfloat16, "2", monkeypatch)
    assert all(torch.equal(first[n], again[n]) for n in first)


def with_lora_start(model_dir: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    params = ComponentParams(apply_lora=True, lora_r=4, lora_alpha=8)
    model = with_lora(AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype), params)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
