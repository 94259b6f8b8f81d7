"""Packed rows: several conversations in one row see only themselves (block-diagonal causal attention)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from local.platform.training.attention import segment_bounds, use_packed_attention
from local.platform.training.data import collate, pack, read_conversations, tokenize_split
from local.platform.training.loop import token_loss_sum


@pytest.fixture(scope="module")
def three_examples(tokenizer: Any, small_data: dict[str, Path]) -> list[Any]:
    conversations = read_conversations(small_data["train_sft"], training=True)[:3]
    examples = tokenize_split("train", tokenizer, conversations, 256).examples
    assert len({len(e.input_ids) for e in examples}) > 1  # different lengths: padding would be needed
    return examples


def load(model_dir: Path, attention: str) -> Any:
    """The tiny model with Hugging Face's SDPA and its block-diagonal mask, or the recipe's attention,
    one SDPA call per packed conversation."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    assert model.config._attn_implementation == "sdpa"
    if attention == "per-conversation":
        assert use_packed_attention(model)
    return model


ATTENTION = pytest.mark.parametrize("attention", ["block-mask", "per-conversation"])


@ATTENTION
def test_packed_row_gives_each_conversation_the_logits_it_has_alone(
    tiny_model_dir: Path, three_examples: list[Any], attention: str
) -> None:
    model = load(tiny_model_dir, attention)
    batch = pack(three_examples)
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    with torch.inference_mode():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        start = 0
        for example in three_examples:
            alone = model(input_ids=torch.tensor([example.input_ids]), use_cache=False).logits[0]
            torch.testing.assert_close(packed[start : start + len(example.input_ids)], alone, atol=1e-5, rtol=1e-4)
            start += len(example.input_ids)


@ATTENTION
def test_packed_row_gives_a_different_answer_without_restarting_positions(
    tiny_model_dir: Path, three_examples: list[Any], attention: str
) -> None:
    """The check above can fail: with one running position sequence the conversations see each other."""
    model = load(tiny_model_dir, attention)
    batch = pack(three_examples)
    second = len(three_examples[0].input_ids)
    with torch.inference_mode():
        mixed = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
        alone = model(input_ids=torch.tensor([three_examples[1].input_ids]), use_cache=False).logits[0]
    assert not torch.allclose(mixed[second : second + len(three_examples[1].input_ids)], alone, atol=1e-3)


@ATTENTION
def test_packed_and_padded_batches_have_the_same_loss_and_accuracy(
    tiny_model_dir: Path, three_examples: list[Any], tokenizer: Any, attention: str
) -> None:
    model = load(tiny_model_dir, attention)
    with torch.inference_mode():
        packed_loss, packed_count, packed_right = token_loss_sum(model, pack(three_examples))
        padded_loss, padded_count, padded_right = token_loss_sum(model, collate(three_examples, tokenizer.pad_token_id))
    assert packed_count == padded_count == sum(e.num_label_tokens for e in three_examples)
    assert float(packed_loss) == pytest.approx(float(padded_loss), rel=1e-5)
    assert packed_right == padded_right


def test_packed_attention_splits_a_row_where_its_positions_restart(three_examples: list[Any]) -> None:
    lengths = [len(e.input_ids) for e in three_examples]
    bounds = segment_bounds(pack(three_examples)["position_ids"])
    assert bounds == [0, lengths[0], lengths[0] + lengths[1], sum(lengths)]
    assert segment_bounds(torch.arange(7).unsqueeze(0)) == [0, 7]  # one sequence: the stock SDPA path


def test_packed_attention_computes_in_fp32_on_cpu_and_returns_the_models_dtype() -> None:
    """A bf16 model under autocast gets bf16 out and bf16 gradients, computed in fp32: the output is the fp32
    result rounded once, closer to it than a bf16 computation."""
    from types import SimpleNamespace

    from local.platform.training.attention import packed_sdpa_forward

    torch.manual_seed(0)
    lengths = [5, 9, 7]
    positions = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    q32, k32, v32 = (torch.randn(1, 4, sum(lengths), 8) for _ in range(3))
    module = SimpleNamespace(is_causal=True, num_key_value_groups=1)
    q, k, v = (t.to(torch.bfloat16).requires_grad_() for t in (q32, k32, v32))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out, _ = packed_sdpa_forward(module, q, k, v, None, position_ids=positions)
    assert out.dtype == torch.bfloat16 and out.shape == (1, sum(lengths), 4, 8)
    out.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16 and bool(q.grad.abs().sum() > 0)
    exact = torch.cat(
        [
            torch.nn.functional.scaled_dot_product_attention(a, b, c, is_causal=True)
            for a, b, c in zip(*(t.detach().float().split(lengths, dim=2) for t in (q, k, v)), strict=True)
        ],
        dim=2,
    ).transpose(1, 2)
    # rounded once from the fp32 result: within half a bf16 ulp (2^-8 relative)
    torch.testing.assert_close(out.detach().float(), exact, rtol=2**-8, atol=1e-6)
