"""Attention for packed rows: each conversation of the row attends to itself alone, one causal SDPA call
per conversation, instead of one call over the whole row with a block-diagonal mask.

On CPU the attention itself runs in fp32 even when the model computes in bf16: PyTorch's CPU flash-attention
kernels are much slower in bf16 than in fp32 at conversation lengths (backward, measured on an AMX CPU:
2.9 ms against 0.8 ms per call at 112 tokens), while the casts of q, k, v and the output are a few hundred
kilobytes. Its FLOPs are a few percent of the step, so fp32 costs nothing in matmul speed and is more
exact. Autocast is switched off around it, or it would cast the fp32 inputs straight back to bf16.

Both compute the same thing (tests/functional/local/training/test_packing.py checks logits against each
conversation alone, with either implementation). The masked call does the work of the full row, T^2, and
with an explicit mask SDPA cannot use its causal fast path; per conversation it is the sum of L_i^2, which
for the 4 conversations of a typical step is about a quarter. Boundaries come from the position ids as
Hugging Face reads them for packed rows (a position that does not follow the one before starts a new
sequence). Anything else (a batch of several rows, padding, a key/value cache) goes to the stock SDPA
function with its mask, unchanged.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

PACKED_SDPA = "packed_sdpa"


def segment_bounds(position_ids: torch.Tensor) -> list[int]:
    """``[0, s1, ..., T]`` for one row of position ids: where each packed sequence starts, and the end."""
    row = position_ids.reshape(-1)
    starts = (row[1:] - row[:-1] != 1).nonzero().flatten() + 1
    return [0, *starts.tolist(), int(row.numel())]


def packed_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Hugging Face's attention-function signature; ``(batch, length, heads, head_dim)`` out."""
    causal = getattr(module, "is_causal", True)
    packed = causal and position_ids is not None and query.shape[0] == 1 and query.shape[2] == key.shape[2] > 1
    bounds = segment_bounds(position_ids) if packed and position_ids is not None else []
    if len(bounds) <= 2:  # not a packed row (or one sequence): the stock path, mask and all
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    groups = int(getattr(module, "num_key_value_groups", 1))
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    # split, not slicing: the gradient of a split is one concatenation, that of each slice a zero-filled
    # tensor of the whole row added up (measured: fill_ and add_ then took a third of the step)
    lengths = [end - start for start, end in itertools.pairwise(bounds)]
    dtype = query.dtype
    with attention_precision(query) as compute:
        outputs = [
            torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, is_causal=True)
            for q, k, v in zip(
                query.to(compute).split(lengths, dim=2),
                key.to(compute).split(lengths, dim=2),
                value.to(compute).split(lengths, dim=2),
                strict=True,
            )
        ]
        return torch.cat(outputs, dim=2).transpose(1, 2).to(dtype).contiguous(), None


@contextlib.contextmanager
def attention_precision(query: torch.Tensor) -> Iterator[torch.dtype]:
    """The dtype packed attention computes in: fp32 on CPU (autocast off meanwhile), else the query's."""
    if query.device.type != "cpu" or query.dtype == torch.float32:
        yield query.dtype
        return
    with torch.autocast(device_type="cpu", enabled=False):
        yield torch.float32


def packed_sdpa_mask(batch_size: int, q_length: int, kv_length: int, **kwargs: Any) -> torch.Tensor | None:
    """No mask for one row without padding (what ``pack`` makes): ``packed_sdpa_forward`` splits it by its
    position ids, so the T x T block-diagonal mask Hugging Face would build goes unused. Padded or several
    rows, or a cache: SDPA's own mask, which the stock path then uses."""
    offsets = kwargs.get("q_offset", 0), kwargs.get("kv_offset", 0)
    if batch_size == 1 and q_length == kv_length and offsets == (0, 0) and kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(batch_size, q_length, kv_length, **kwargs)


AttentionInterface.register(PACKED_SDPA, packed_sdpa_forward)
AttentionMaskInterface.register(PACKED_SDPA, packed_sdpa_mask)


def use_packed_attention(model: Any) -> bool:
    """Switch ``model`` to per-conversation attention where it uses SDPA now; False (unchanged) otherwise
    (an architecture on eager or another kernel keeps it)."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(PACKED_SDPA)
    return True
