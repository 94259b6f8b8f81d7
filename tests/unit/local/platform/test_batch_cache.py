"""The running batch's tensors stay on the serving device: a decoding step's new mask column included (it was
made on the CPU, which fails at the first step on a CUDA device). The ``meta`` device stands in for one here:
a CPU tensor concatenated with a meta one raises, as with a CUDA one."""

from __future__ import annotations

import torch

from local.platform.serving.batch_cache import BatchCache


class _Layer:
    def __init__(self, rows: int, width: int, device: torch.device) -> None:
        self.keys = torch.zeros((rows, 1, width, 2), device=device)
        self.values = torch.zeros((rows, 1, width, 2), device=device)


class _Cache:
    def __init__(self, rows: int, width: int, device: torch.device) -> None:
        self.layers = [_Layer(rows, width, device)]


def test_every_tensor_of_the_batch_stays_on_its_device() -> None:
    device = torch.device("meta")
    batch: BatchCache[str] = BatchCache(device)
    batch.join(["a"], _Cache(1, 3, device), torch.ones((1, 3), dtype=torch.long, device=device))
    batch.join(["b", "c"], _Cache(2, 2, device), torch.ones((2, 2), dtype=torch.long, device=device))
    positions = batch.grow()
    assert batch.mask is not None and batch.last is not None
    assert batch.mask.shape == (3, 4) and positions.shape == (3, 1)
    assert {batch.mask.device, batch.last.device, positions.device} == {device}
    assert batch.cache.layers[0].keys.device == device
