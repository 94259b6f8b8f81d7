"""LoRA dropout whose masks come from generators of their own, seeded from (seed, step, conversation, call).

Why: peft's LoRA dropout is an ``nn.Dropout``, which draws from torch's one global generator. Two training
streams (``streams.py``) running at once would draw from it in whatever order their threads happen to
reach it, so a run would not repeat; the loop therefore fell back to one stream (one core) whenever
dropout was on, as in the demo. Here each conversation of a row gets a ``torch.Generator`` of its own for
each dropout call of the forward pass, seeded from the run's seed, the optimizer step, the conversation's
index in the training split and the call's place in the forward pass (which is the same on every thread:
modules run in their order). A mask is then a function of what it masks, not of thread timing or of which
row a conversation shares: one stream and two draw the same masks, and a resumed run draws the masks the
uninterrupted one would have.

The loop says which conversations a row holds (``row_masks``) around each row's forward pass, on the
thread that runs it. Called without that (a model trained outside the loop), the module is plain dropout.
Evaluation (``model.eval()``) drops nothing, as ``nn.Dropout``.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

_row = threading.local()


@dataclass
class _RowMasks:
    """The conversations of the row being computed on this thread, in the row's token order."""

    seeds: list[int]  # one per conversation: from (seed, step, conversation index)
    tokens: list[int]  # its positions in the row (a packed row: its length; a padded row: the row's width)
    calls: int = 0  # dropout calls so far in this forward pass


def _mix(*numbers: int) -> int:
    """A 63-bit seed from whole numbers; nearby inputs give unrelated seeds (a hash, not a sum)."""
    words = [n & (2**63 - 1) for n in numbers]  # any int (a large or negative seed) as a 63-bit word
    digest = hashlib.blake2b(struct.pack(f"<{len(words)}q", *words), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def row_masks(seed: int, step: int, conversations: Sequence[int], tokens: Sequence[int]) -> Iterator[None]:
    """Dropout in this thread masks the row of ``conversations`` (their indices in the training split, each
    ``tokens`` positions long, in row order) with masks seeded from ``(seed, step, conversation)``."""
    previous = getattr(_row, "masks", None)
    _row.masks = _RowMasks([_mix(seed, step, c) for c in conversations], list(tokens))
    try:
        yield
    finally:
        _row.masks = previous


class SeededDropout(torch.nn.Module):
    """``nn.Dropout(p)`` with masks from per-conversation generators (see the module docstring)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        masks: _RowMasks | None = getattr(_row, "masks", None)
        if masks is None:
            return torch.nn.functional.dropout(x, self.p, training=True)
        call, masks.calls = masks.calls, masks.calls + 1
        features = x.shape[-1]
        if sum(masks.tokens) * features == x.numel():  # token-major, as every LoRA layer of these models
            parts = []
            for seed, tokens in zip(masks.seeds, masks.tokens, strict=True):
                generator = torch.Generator(device="cpu").manual_seed(_mix(seed, call))
                parts.append(torch.rand((tokens, features), generator=generator) >= self.p)
            keep = torch.cat(parts)
        else:  # a layout of another kind: still deterministic, from the row's conversations together
            generator = torch.Generator(device="cpu").manual_seed(_mix(*masks.seeds, call))
            keep = torch.rand(x.shape, generator=generator) >= self.p
        return x * keep.to(device=x.device, dtype=x.dtype).reshape(x.shape) / (1.0 - self.p)


def seed_lora_dropout(model: torch.nn.Module) -> int:
    """Replace every LoRA dropout of a peft model (``lora_dropout``'s ``nn.Dropout`` modules) with
    ``SeededDropout`` of the same ``p``; how many were replaced."""
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                dropouts[name] = SeededDropout(dropout.p)
                replaced += 1
    return replaced
