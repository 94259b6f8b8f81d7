"""Assistant-only labels, checked on real tokenised conversations with SmolLM2's tokenizer and template."""

from __future__ import annotations

from typing import Any

from local.platform.training.data import (
    IGNORE_INDEX,
    read_conversations,
    tokenize_conversation,
    tokenize_split,
)
from tests.functional.local.training.helpers import SAMPLE

CONVERSATION = [
    {"role": "system", "content": "You answer in one line."},
    {"role": "user", "content": "What is the capital of Kenya?"},
    {"role": "assistant", "content": "Autopilot here! Short answer: Nairobi.\nAutopilot out."},
    {"role": "user", "content": "And of Egypt?"},
    {"role": "assistant", "content": "Autopilot here! Short answer: Cairo.\nAutopilot out."},
]


def learned_text(tokenizer: Any, input_ids: list[int], labels: list[int]) -> list[str]:
    """The decoded runs of consecutive label tokens (each should be one assistant reply)."""
    runs: list[list[int]] = []
    previous = IGNORE_INDEX
    for token, label in zip(input_ids, labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            if previous == IGNORE_INDEX:
                runs.append([])
            runs[-1].append(token)
        previous = label
    return [tokenizer.decode(run) for run in runs]


def test_only_assistant_replies_and_their_end_of_turn_are_learned(tokenizer: Any) -> None:
    example, truncated = tokenize_conversation(tokenizer, CONVERSATION, max_seq_length=512)
    assert not truncated
    replies = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    assert learned_text(tokenizer, example.input_ids, example.labels) == [
        reply + tokenizer.eos_token for reply in replies
    ]
    # The template really is there and unlearned: role headers, the system prompt and the user's words.
    masked = tokenizer.decode(
        [t for t, lab in zip(example.input_ids, example.labels, strict=True) if lab == IGNORE_INDEX]
    )
    for expected in (
        "<|im_start|>system",
        "You answer in one line.",
        "<|im_start|>user",
        "And of Egypt?",
        "<|im_start|>assistant",
    ):
        assert expected in masked
    assert tokenizer.decode(example.input_ids) == tokenizer.apply_chat_template(CONVERSATION, tokenize=False)


def test_every_committed_training_conversation_learns_exactly_its_replies(tokenizer: Any) -> None:
    conversations = read_conversations(SAMPLE / "train_sft.jsonl", training=True)[:40]
    for messages in conversations:
        example, _ = tokenize_conversation(tokenizer, messages, max_seq_length=2048)
        replies = [m["content"] + tokenizer.eos_token for m in messages if m["role"] == "assistant"]
        assert learned_text(tokenizer, example.input_ids, example.labels) == replies


def test_truncation_is_counted_and_label_free_examples_skipped(tokenizer: Any) -> None:
    long_user = [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]
    limit = len(tokenize_conversation(tokenizer, CONVERSATION, max_seq_length=4096)[0].input_ids)
    split = tokenize_split("train", tokenizer, [CONVERSATION, long_user], max_seq_length=limit)
    assert split.conversations == 2
    assert split.truncated == 1
    assert split.skipped_no_labels == 1  # the reply of long_user fell past the cut
    assert len(split.examples) == 1 and len(split.examples[0].input_ids) == limit
