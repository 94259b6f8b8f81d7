"""The running batch of ``batching.BatchEngine``: its requests and their key/value cache, row for row.

Kept apart from the engine because it is tensor bookkeeping only (no model, no tokenizer, no futures): row
``i`` of the cache, of the attention mask and of the next tokens belongs to ``rows[i]``, and every change
here keeps them aligned:

- a group of pre-filled requests joins: its cache and the running one are padded on the left to one width
  (the padding masked out) and stacked;
- one decoding step adds a column every row attends to;
- rows that are done leave at once: their cache rows are dropped, and columns that are padding in every
  remaining row are trimmed, so a long answer that ended costs the others nothing.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import torch

RowT = TypeVar("RowT")


class BatchCache(Generic[RowT]):
    """``rows``, the model's ``cache`` of them, ``mask`` (rows, cached columns; 0 where a row is left padding)
    and ``last`` (rows, 1: the token each row feeds next). Empty: no rows, and ``cache``, ``mask``, ``last``
    None."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rows: list[RowT] = []
        self.cache: Any = None
        self.mask: torch.Tensor | None = None
        self.last: torch.Tensor | None = None

    def clear(self) -> None:
        self.rows, self.cache, self.mask, self.last = [], None, None, None

    def join(self, new: list[RowT], cache: Any, mask: torch.Tensor) -> None:
        """Add the pre-filled ``new`` rows (their ``cache`` and ``mask``) after the running ones."""
        if self.cache is None or self.mask is None or not self.rows:
            self.rows, self.cache, self.mask = list(new), cache, mask
            self.last = torch.zeros((len(new), 1), dtype=torch.long, device=self.device)
            return
        old_len, new_len = self.mask.shape[1], mask.shape[1]
        width = max(old_len, new_len)
        for old_layer, new_layer in zip(self.cache.layers, cache.layers, strict=True):
            old_layer.keys = torch.cat(
                [_pad_left(old_layer.keys, width, dim=2), _pad_left(new_layer.keys, width, dim=2)], dim=0
            )
            old_layer.values = torch.cat(
                [_pad_left(old_layer.values, width, dim=2), _pad_left(new_layer.values, width, dim=2)], dim=0
            )
        self.mask = torch.cat([_pad_left(self.mask, width, dim=1), _pad_left(mask, width, dim=1)], dim=0)
        assert self.last is not None
        self.last = torch.cat([self.last, torch.zeros((len(new), 1), dtype=torch.long, device=self.device)], dim=0)
        self.rows.extend(new)

    def grow(self) -> torch.Tensor:
        """One more column, attended to by every row, for the tokens fed next; their position ids (rows, 1)."""
        assert self.mask is not None
        self.mask = torch.cat(
            [self.mask, torch.ones((len(self.rows), 1), dtype=self.mask.dtype, device=self.mask.device)], dim=1
        )
        return self.mask.sum(-1, keepdim=True) - 1

    def keep(self, indices: list[int]) -> None:
        """Only the rows at ``indices`` stay (in that order); the batch is cleared when none does."""
        if not indices:
            self.clear()
            return
        assert self.mask is not None and self.last is not None
        index = torch.tensor(indices, dtype=torch.long, device=self.device)
        mask = self.mask.index_select(0, index)
        # Columns that are padding in every remaining row hold nothing: trim them.
        first = int(mask.any(0).nonzero()[0].item())
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, first:, :]
            layer.values = layer.values.index_select(0, index)[:, :, first:, :]
        self.mask = mask[:, first:]
        self.last = self.last.index_select(0, index)
        self.rows = [self.rows[i] for i in indices]


def _pad_left(tensor: torch.Tensor, width: int, *, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
