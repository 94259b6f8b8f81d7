"""Evaluation in packed rows on every stream gives the numbers of the plain way: each conversation alone
through the model's own head, its cross-entropy summed over the assistant tokens."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM

from local.platform.training import output_loss
from local.platform.training.attention import use_packed_attention
from local.platform.training.data import IGNORE_INDEX, read_conversations, tokenize_split
from local.platform.training.loop import eval_rows, evaluate
from local.platform.training.lora import with_lora
from shared.config.params import ComponentParams

# Three decimals, as the job reports them (fp32 agrees far closer: rounding of sums in another order).
THREE_DECIMALS = 5e-4


def one_at_a_time(model: Any, examples: list[Any]) -> tuple[float, float]:
    """``(mean loss per label token, perplexity)`` the slow, obvious way: one conversation per forward
    pass, the full logits, ``F.cross_entropy``."""
    total, tokens = 0.0, 0
    with torch.no_grad():
        for example in examples:
            ids = torch.tensor([example.input_ids])
            labels = torch.tensor(example.labels[1:])
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
            total += float(F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum"))
            tokens += int((labels != IGNORE_INDEX).sum())
    return total / tokens, math.exp(total / tokens)


@pytest.fixture(scope="module")
def examples(tokenizer: Any, small_data: dict[str, Path]) -> list[Any]:
    conversations = read_conversations(small_data["train_sft"], training=True)
    return tokenize_split("train", tokenizer, conversations, 256).examples


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full-fine-tune"])
@pytest.mark.parametrize("streams", [1, 2])
def test_evaluation_gives_the_loss_and_perplexity_of_one_conversation_at_a_time(
    tiny_model_dir: Path, examples: list[Any], lora: bool, streams: int
) -> None:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    if lora:
        model = with_lora(model, ComponentParams(apply_lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.1))
        for name, parameter in model.named_parameters():  # B starts at zero: make the adapters count
            if "lora_B" in name:
                parameter.data.normal_(0, 0.05)
    else:
        model.requires_grad_(True)  # a full fine-tune: the head is trainable, and evaluation fuses it anyway
    expected_loss, expected_perplexity = one_at_a_time(model.eval(), examples)
    use_packed_attention(model)
    model.train()

    result = evaluate(model, examples, torch.device("cpu"), torch.float32, stream_count=streams)

    assert result.loss == pytest.approx(expected_loss, abs=THREE_DECIMALS)
    assert result.perplexity == pytest.approx(expected_perplexity, abs=THREE_DECIMALS * expected_perplexity)
    assert result.tokens == sum(e.num_label_tokens for e in examples)
    assert result.examples == len(examples)
    assert model.training  # left as it was found
    assert output_loss.plain_head(model, training=False) is not None  # the fused head is the path under test


def test_evaluation_on_two_streams_is_the_same_on_every_run(tiny_model_dir: Path, examples: list[Any]) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    use_packed_attention(model)
    runs = [evaluate(model, examples, torch.device("cpu"), stream_count=2) for _ in range(3)]
    assert len({(r.loss, r.token_accuracy) for r in runs}) == 1


@given(st.lists(st.integers(min_value=1, max_value=600), min_size=1, max_size=60), st.integers(1, 4))
def test_rows_cover_every_conversation_once_in_a_multiple_of_the_streams(lengths: list[int], streams: int) -> None:
    rows = eval_rows(lengths, streams, row_tokens=512)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert len(rows) == len(lengths) or len(rows) % streams == 0
    assert len(rows) >= min(len(lengths), math.ceil(sum(lengths) / 512))
