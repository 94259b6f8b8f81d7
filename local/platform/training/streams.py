"""Parallel streams on CPU: a micro-batch's conversations split into a few packed rows whose forward and
backward passes run at once, one Python thread each with its share of the intra-op threads.

Why: at demo sizes (4 conversations of about 110 tokens per step) most of a CPU step is hundreds of small
elementwise ops, each too small for two cores to share (a 448 x 576 multiply takes about as long on one
thread as on two); two rows on two threads keep both cores busy with ops of their own. PyTorch's kernels
release the GIL, so the threads overlap. Measured with benchmarks/train_vs_trl.py.

The result does not depend on thread timing: each stream computes its gradients with ``torch.autograd.grad``
(nothing accumulates concurrently), and the caller sums them in stream order. The split is deterministic
(longest conversations first, each to the lightest row). LoRA dropout draws its masks from generators of
its own, seeded per (seed, step, conversation) (``dropout.py``), so it runs on every stream too; a model that
draws from torch's one global generator in training (another dropout, the architecture's attention
dropout) runs one stream: threads would draw from it in a racy order. Evaluation (no dropout) always may.

``AUTOPILOT_LOCAL_TRAIN_STREAMS`` (``Settings.local_train_streams``): ``auto`` (one per intra-op thread, at most
one per conversation) or a number; ``1`` is the single-row path. CUDA always runs one stream (the GPU has
its own parallelism).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from shared.settings import TRAIN_STREAMS_SETTING, Settings

STREAMS_SETTING = TRAIN_STREAMS_SETTING

T = TypeVar("T")
R = TypeVar("R")


def requested_streams(env: Mapping[str, str] | None = None) -> int:
    """The setting as a number of streams; 0 for ``auto`` (``Settings`` checks the value)."""
    value = Settings.from_env(env).local_train_streams
    return 0 if value == "auto" else int(value)


def draws_random_numbers(model: torch.nn.Module) -> bool:
    """Dropout from torch's global generator anywhere in the model (an ``nn.Dropout``, or the architecture's
    attention dropout); the seeded LoRA dropout of ``dropout.py`` is not one."""
    if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()):
        return True
    configs = [getattr(m, "config", None) for m in model.modules() if hasattr(m, "config")]
    return any(float(getattr(c, "attention_dropout", 0.0) or 0.0) > 0 for c in configs if c is not None)


def stream_count(
    model: torch.nn.Module, device: torch.device, env: Mapping[str, str] | None = None, *, for_training: bool = True
) -> int:
    """Streams for training (``for_training``) or for a forward-only pass (evaluation: no dropout drawn)."""
    requested = requested_streams(env)
    if device.type != "cpu" or requested == 1 or (for_training and draws_random_numbers(model)):
        return 1
    return requested or max(1, torch.get_num_threads())


def split_balanced(lengths: Sequence[int], parts: int) -> list[list[int]]:
    """Indices into ``lengths`` in at most ``parts`` groups of about equal total length (no empty group);
    each group keeps the original order, so a row packs its conversations as a single row would."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = [[] for _ in range(min(parts, len(lengths)))]
    totals = [0] * len(groups)
    for i in order:
        lightest = min(range(len(groups)), key=lambda g: (totals[g], g))
        groups[lightest].append(i)
        totals[lightest] += lengths[i]
    return [sorted(g) for g in groups if g]


class StreamPool:
    """Worker threads with their share of the intra-op threads (an OpenMP setting is per thread)."""

    def __init__(self, streams: int) -> None:
        self.streams = streams
        threads = max(1, torch.get_num_threads() // streams)
        self._pool = (
            ThreadPoolExecutor(
                streams, thread_name_prefix="train-stream", initializer=torch.set_num_threads, initargs=(threads,)
            )
            if streams > 1
            else None
        )

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items`` at once, results in order; in the calling thread when there is one item."""
        if self._pool is None or len(items) == 1:
            return [fn(item) for item in items]
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> StreamPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
