"""Batching pieces of the data path: seeded shuffles, length-sorted evaluation, padding, holdout."""

from __future__ import annotations

import torch

from local.platform.training.data import IGNORE_INDEX, TokenizedExample, batch_indices, collate, holdout


def test_training_batches_cover_every_example_once_and_reshuffle_per_epoch() -> None:
    lengths = [5] * 10
    first = batch_indices(lengths, 3, shuffle=True, seed=1, epoch=0)
    assert sorted(i for batch in first for i in batch) == list(range(10))
    assert [len(b) for b in first] == [3, 3, 3, 1]
    assert first == batch_indices(lengths, 3, shuffle=True, seed=1, epoch=0)
    assert first != batch_indices(lengths, 3, shuffle=True, seed=1, epoch=1)
    assert first != batch_indices(lengths, 3, shuffle=True, seed=2, epoch=0)


def test_evaluation_batches_group_similar_lengths() -> None:
    batches = batch_indices([9, 1, 5, 2], 2, shuffle=False)
    assert batches == [[1, 3], [2, 0]]


def test_collate_pads_right_and_masks_padding() -> None:
    examples = [TokenizedExample([1, 2, 3], [IGNORE_INDEX, 2, 3]), TokenizedExample([4], [4])]
    batch = collate(examples, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["input_ids"].dtype == torch.long


def test_collate_can_pad_to_a_fixed_length() -> None:
    batch = collate([TokenizedExample([1], [1])], pad_token_id=0, pad_to=4)
    assert batch["input_ids"].shape == (1, 4)


def test_holdout_is_seeded_and_disjoint() -> None:
    conversations = [[{"role": "user", "content": str(i)}] for i in range(20)]
    kept, held = holdout(conversations, 0.1, seed=3)
    assert len(held) == 2 and len(kept) == 18
    assert holdout(conversations, 0.1, seed=3) == (kept, held)
    assert not [c for c in held if c in kept]
    assert len(holdout(conversations[:3], 0.1, seed=3)[1]) == 1  # at least one conversation
