"""LoRA dropout with masks from (seed, step, conversation): a dropout config trains on every stream, repeats
exactly, and one stream and two end at the same losses (fp32: to rounding, rel 1e-5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from local.platform.training import dropout, streams
from local.platform.training.data import read_conversations, tokenize_split
from local.platform.training.loop import train
from local.platform.training.lora import with_lora
from shared.config.params import ComponentParams


def params(lora_dropout: float) -> ComponentParams:
    return ComponentParams(
        apply_lora=True,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=lora_dropout,
        learning_rate=1e-2,
        max_steps=4,
        logging_steps=1,
        per_device_train_batch_size=4,
        seed=7,
    )


def run(model_dir: Path, examples: list[Any], lora_dropout: float, count: str, monkeypatch: Any) -> list[float]:
    monkeypatch.setenv(streams.STREAMS_SETTING, count)
    torch.manual_seed(0)
    model = with_lora(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), params(lora_dropout))
    assert streams.stream_count(model, torch.device("cpu")) == int(count)  # dropout no longer forces one stream
    losses: list[float] = []
    train(
        model,
        examples,
        params(lora_dropout),
        pad_token_id=0,
        device=torch.device("cpu"),
        on_log=lambda e: losses.append(e["loss"]),
    )
    return losses


@pytest.fixture(scope="module")
def examples(tokenizer: Any, small_data: dict[str, Path]) -> list[Any]:
    return tokenize_split("train", tokenizer, read_conversations(small_data["train_sft"], training=True), 256).examples


def test_lora_dropout_is_seeded_and_no_global_generator_is_drawn_from(tiny_model_dir: Path) -> None:
    model = with_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), params(0.1))
    seeded = [m for m in model.modules() if isinstance(m, dropout.SeededDropout)]
    assert seeded and all(m.p == 0.1 for m in seeded)
    assert not streams.draws_random_numbers(model)


def test_a_dropout_config_repeats_exactly_on_two_streams_and_matches_one_stream(
    tiny_model_dir: Path, examples: list[Any], monkeypatch: Any
) -> None:
    two = run(tiny_model_dir, examples, 0.3, "2", monkeypatch)
    again = run(tiny_model_dir, examples, 0.3, "2", monkeypatch)
    one = run(tiny_model_dir, examples, 0.3, "1", monkeypatch)
    without = run(tiny_model_dir, examples, 0.0, "2", monkeypatch)
    assert two == again  # bit for bit: thread timing does not enter the masks
    # The same masks whatever row a conversation shares; the sums differ only in float32 rounding order.
    assert two == pytest.approx(one, rel=1e-5)
    assert two[1:] != pytest.approx(without[1:], rel=1e-4)  # the masks do drop something (step 1: B is zero)


def test_a_conversations_mask_does_not_depend_on_the_row_it_shares() -> None:
    layer = dropout.SeededDropout(0.5).train()
    x = torch.ones(1, 7, 3)
    with dropout.row_masks(seed=1, step=2, conversations=[10, 11], tokens=[3, 4]):
        packed = layer(x)
        second_call = layer(x)
    with dropout.row_masks(seed=1, step=2, conversations=[11], tokens=[4]):
        alone = layer(torch.ones(1, 4, 3))
    with dropout.row_masks(seed=1, step=3, conversations=[11], tokens=[4]):
        next_step = layer(torch.ones(1, 4, 3))
    assert torch.equal(packed[:, 3:], alone)
    assert set(packed.unique().tolist()) <= {0.0, 2.0}  # kept values scaled by 1 / (1 - p)
    assert not torch.equal(packed, second_call)  # each dropout call of the pass draws its own mask
    assert not torch.equal(alone, next_step)  # and each step
    assert torch.equal(layer.eval()(x), x)


def test_an_input_of_another_layout_is_still_masked_the_same_way_each_time() -> None:
    layer = dropout.SeededDropout(0.5).train()
    x = torch.ones(2, 5)  # not (positions, features) of the row's 3 + 4 positions
    masks = []
    for _ in range(2):
        with dropout.row_masks(seed=-1, step=2**70, conversations=[10, 11], tokens=[3, 4]):
            masks.append(layer(x))
    assert torch.equal(masks[0], masks[1]) and set(masks[0].unique().tolist()) <= {0.0, 2.0}
