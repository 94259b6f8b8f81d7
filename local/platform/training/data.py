"""From chat files to padded batches: chat template, assistant-only labels, batching.

The pieces are separate on purpose, so sequence packing or length bucketing can replace one without
touching the others:
- ``tokenize_conversation``: one conversation -> ``input_ids`` and ``labels`` (-100 everywhere except the
  assistant's own words and its end-of-turn token);
- ``batch_indices``: which examples go together (today: shuffled per epoch, fixed size);
- ``collate``: a list of examples -> padded tensors;
- ``pack``: a list of examples -> ONE row, no padding, positions restarting at 0 for each conversation.

Packing is what training uses (unless ``pad_to_max_length`` asks for padding): the same conversations per
step as padded batches, so the loss is the same number, but no compute goes to padding. The model sees a
block-diagonal causal mask: Hugging Face models build it from position ids that restart when the attention
mask is left out (``transformers.masking_utils.find_packed_sequence_indices``), so a token never attends to
another conversation; tests/functional/local/training/test_packing.py checks logits and loss against each
conversation alone.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from local.platform.dataset import INVALID_ROW, iter_rows, row_problem

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


class ChatTemplateError(ValueError):
    """The tokenizer's chat template cannot be split into turns (each prefix must render as a prefix)."""


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]

    @property
    def num_label_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class TokenizedSplit:
    """A split ready for the model, with what was lost on the way (counted, never silent)."""

    name: str
    examples: list[TokenizedExample] = field(default_factory=list)
    conversations: int = 0
    truncated: int = 0  # longer than max_seq_length, cut at the end
    skipped_no_labels: int = 0  # no assistant token left after truncation

    @property
    def tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)


def read_conversations(path: Path, *, training: bool) -> list[list[dict[str, str]]]:
    """The ``messages`` of every row; ``ValueError`` on the first bad row (data is validated before this)."""
    conversations = []
    for number, row in iter_rows(path):
        problem = ("invalid_json", "not valid JSON") if row is INVALID_ROW else row_problem(row, training=training)
        if problem:
            raise ValueError(f"{Path(path).name} line {number}: {problem[0]} ({problem[1]})")
        conversations.append([{"role": m["role"], "content": m["content"]} for m in row["messages"]])
    return conversations


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], *, generation_prompt: bool) -> str:
    if not messages:
        return ""
    return str(tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt))


def assistant_spans(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans the model learns: each assistant reply plus the
    end-of-turn token that closes it (so the model learns to stop), but not the role header before it."""
    text = _render(tokenizer, messages, generation_prompt=False)
    eos = tokenizer.eos_token or ""
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        upto = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        prompt = _render(tokenizer, messages[:i], generation_prompt=True)
        if not text.startswith(upto):
            raise ChatTemplateError("the chat template renders a conversation's prefix differently")
        if upto.startswith(prompt) and prompt:
            start = len(prompt)
        else:  # templates whose generation prompt differs from a rendered turn: find the reply itself
            start = upto.find(
                message["content"].strip(), len(_render(tokenizer, messages[:i], generation_prompt=False))
            )
            if start < 0:
                raise ChatTemplateError("the chat template changes assistant replies; cannot locate them")
        content_end = upto.find(message["content"].strip(), start)
        content_end = start if content_end < 0 else content_end + len(message["content"].strip())
        stop = upto.find(eos, content_end) if eos else -1
        end = stop + len(eos) if stop >= 0 else len(upto)
        spans.append((start, end))
    return text, spans


def tokenize_conversation(
    tokenizer: Any, messages: Sequence[dict[str, str]], max_seq_length: int
) -> tuple[TokenizedExample, bool]:
    """``(example, truncated)``: the conversation through the chat template, labels on assistant spans only."""
    text, spans = assistant_spans(tokenizer, messages)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoding["input_ids"])
    labels = []
    for token_id, (start, _end) in zip(input_ids, encoding["offset_mapping"], strict=True):
        inside = any(span_start <= start < span_end for span_start, span_end in spans)
        labels.append(token_id if inside else IGNORE_INDEX)
    truncated = len(input_ids) > max_seq_length
    return TokenizedExample(input_ids[:max_seq_length], labels[:max_seq_length]), truncated


def tokenize_split(
    name: str, tokenizer: Any, conversations: Sequence[Sequence[dict[str, str]]], max_seq_length: int
) -> TokenizedSplit:
    split = TokenizedSplit(name=name, conversations=len(conversations))
    for messages in conversations:
        example, truncated = tokenize_conversation(tokenizer, messages, max_seq_length)
        split.truncated += truncated
        if example.num_label_tokens == 0:
            split.skipped_no_labels += 1
            continue
        split.examples.append(example)
    return split


def holdout(
    conversations: list[list[dict[str, str]]], fraction: float, seed: int
) -> tuple[list[list[dict[str, str]]], list[list[dict[str, str]]]]:
    """``(kept, held out)``: a seeded random ``fraction`` of the conversations (at least one) set aside."""
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    count = max(1, round(len(conversations) * fraction))
    held = set(order[:count])
    kept = [c for i, c in enumerate(conversations) if i not in held]
    return kept, [conversations[i] for i in sorted(held)]


def batch_indices(
    lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0
) -> list[list[int]]:
    """Groups of example indices, one per forward pass. Training shuffles per epoch (seeded);
    evaluation sorts by length so little compute goes to padding (the mean loss does not change)."""
    order = list(range(len(lengths)))
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
    else:
        order.sort(key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(
    examples: Sequence[TokenizedExample], pad_token_id: int, pad_to: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on padding)."""
    width = max(len(e.input_ids) for e in examples)
    if pad_to is not None:
        width = max(width, pad_to)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def pack(examples: Sequence[TokenizedExample]) -> dict[str, torch.Tensor]:
    """``input_ids``, ``position_ids`` and ``labels`` of one row holding every example end to end; no
    ``attention_mask`` (its absence plus restarting positions is what makes the mask block-diagonal).

    The first token of each conversation gets no label: in a row of its own nothing predicts it, and in the
    packed row the token before it belongs to the previous conversation."""
    input_ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for example in examples:
        input_ids.extend(example.input_ids)
        labels.append(IGNORE_INDEX)
        labels.extend(example.labels[1:])
        positions.extend(range(len(example.input_ids)))
    return {
        "input_ids": torch.tensor([input_ids], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
        "labels": torch.tensor([labels], dtype=torch.long),
    }


def input_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Tokens that carry data (not padding) in a padded or a packed batch."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
