"""The optimisation pieces of the recipe: optimizer and schedule from the component's parameters, the
token-level loss, evaluation, and the training loop with gradient accumulation.

The loss is the mean over label tokens of a whole optimizer step (all accumulated micro-batches), so a long
conversation weighs more than a short one, as in the Hugging Face Trainer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers import get_scheduler

from local.platform.training.data import IGNORE_INDEX, TokenizedExample, batch_indices, collate
from shared.config.params import ComponentParams

logger = logging.getLogger(__name__)


def build_optimizer(model: torch.nn.Module, params: ComponentParams) -> torch.optim.Optimizer:
    """AdamW or Adafactor over the trainable parameters; no weight decay on biases and norms (1-D tensors)."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for _, p in trainable if p.ndim >= 2], "weight_decay": params.weight_decay},
        {"params": [p for _, p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if params.optim == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(groups, lr=params.learning_rate, scale_parameter=False, relative_step=False)
    return torch.optim.AdamW(
        groups, lr=params.learning_rate, betas=(params.adam_beta1, params.adam_beta2), eps=params.adam_epsilon
    )


def build_scheduler(optimizer: torch.optim.Optimizer, params: ComponentParams, total_steps: int) -> Any:
    return get_scheduler(
        params.lr_scheduler_type,
        optimizer,
        num_warmup_steps=params.warmup_steps,
        num_training_steps=total_steps,
    )


def compute_precision(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``dtype`` where it is lower than fp32, so matmuls run in the fast dtype while the trainable
    weights, their gradients and the optimizer state stay fp32 (the master weights); nothing in fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def token_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over label tokens and their count (token t is predicted at position t-1).

    Only positions that predict a label token go through the output layer (``logits_to_keep`` as a mask):
    with a 49k-token vocabulary that layer is a fifth of the compute, and most prompt positions need none.
    """
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets != IGNORE_INDEX
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep
    ).logits  # (label tokens, vocabulary), in batch-then-position order, as targets[keep] below
    wanted = targets[keep[:, :-1]]
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), wanted, reduction="sum")
    return loss, int(wanted.numel())


@dataclass(frozen=True)
class EvalResult:
    loss: float
    perplexity: float
    tokens: int
    examples: int


def evaluate(
    model: torch.nn.Module,
    examples: Sequence[TokenizedExample],
    batch_size: int,
    pad_token_id: int,
    device: torch.device,
    compute_dtype: torch.dtype = torch.float32,
) -> EvalResult:
    """Mean loss per assistant token over the split, and its perplexity."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.inference_mode(), compute_precision(device, compute_dtype):
        for indices in batch_indices([len(e.input_ids) for e in examples], batch_size, shuffle=False):
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in indices], pad_token_id).items()}
            loss_sum, count = token_loss_sum(model, batch)
            total += float(loss_sum)
            tokens += count
    model.train(was_training)
    loss = total / max(tokens, 1)
    return EvalResult(loss=loss, perplexity=_perplexity(loss), tokens=tokens, examples=len(examples))


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


@dataclass
class LoopStats:
    """What the loop did, for the result and the tracking run."""

    steps: int = 0
    train_tokens: int = 0  # non-padding tokens through forward and backward
    train_seconds: float = 0.0
    step_losses: list[float] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per logging step
    validation: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def total_steps(params: ComponentParams, batches_per_epoch: int) -> int:
    """``max_steps`` when set (it overrides epochs, as in the component), else epochs x optimizer steps."""
    if params.max_steps > 0:
        return params.max_steps
    return params.num_train_epochs * math.ceil(batches_per_epoch / params.gradient_accumulation_steps)


def _micro_batches(examples: Sequence[TokenizedExample], params: ComponentParams) -> Iterator[tuple[float, list[int]]]:
    """``(fractional epoch, example indices)`` forever: reshuffled each epoch, the loop decides when to stop."""
    lengths = [len(e.input_ids) for e in examples]
    epoch = 0
    while True:
        batches = batch_indices(
            lengths, params.per_device_train_batch_size, shuffle=True, seed=params.seed, epoch=epoch
        )
        for i, indices in enumerate(batches):
            yield epoch + (i + 1) / len(batches), indices
        epoch += 1


def train(
    model: torch.nn.Module,
    examples: Sequence[TokenizedExample],
    params: ComponentParams,
    *,
    pad_token_id: int,
    device: torch.device,
    on_log: Callable[[dict[str, float]], None],
    validate: Callable[[], float] | None = None,
    compute_dtype: torch.dtype = torch.float32,
) -> LoopStats:
    """Run the optimizer steps; ``on_log`` gets step, loss, learning rate, epoch and tokens/s every
    ``logging_steps`` (and at the last step); ``validate`` returns a validation loss when asked for by
    ``evaluation_strategy``."""
    per_epoch = math.ceil(len(examples) / params.per_device_train_batch_size)
    steps = total_steps(params, per_epoch)
    optimizer = build_optimizer(model, params)
    scheduler = build_scheduler(optimizer, params, steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    pad_to = params.max_seq_length if params.pad_to_max_length and params.max_seq_length > 0 else None
    stats = LoopStats()
    stream = _micro_batches(examples, params)
    window_losses: list[float] = []
    window_tokens, window_start = 0, time.perf_counter()
    best_validation, bad_validations = math.inf, 0
    model.train()
    started = time.perf_counter()
    epoch = 0.0
    for step in range(1, steps + 1):
        # One optimizer step: accumulate up to gradient_accumulation_steps micro-batches, but never across
        # an epoch boundary (the component's Trainer does the same).
        epoch_before = int(epoch)
        chunk: list[list[int]] = []
        while len(chunk) < params.gradient_accumulation_steps:
            epoch, indices = next(stream)
            chunk.append(indices)
            if epoch == int(epoch):  # the micro-batch that ended an epoch
                break
        batches = [collate([examples[i] for i in idx], pad_token_id, pad_to) for idx in chunk]
        step_loss, tokens = _accumulate_gradients(model, batches, device, compute_dtype)
        window_tokens += tokens
        torch.nn.utils.clip_grad_norm_(trainable, params.max_grad_norm)
        learning_rate = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        stats.steps = step
        stats.step_losses.append(step_loss)
        window_losses.append(step_loss)
        if step % params.logging_steps == 0 or step == steps:
            elapsed = time.perf_counter() - window_start
            entry = {
                "step": float(step),
                "loss": sum(window_losses) / len(window_losses),
                "learning_rate": learning_rate,
                "epoch": round(epoch, 4),
                "tokens_per_second": window_tokens / elapsed if elapsed > 0 else 0.0,
            }
            stats.train_tokens += window_tokens
            stats.history.append(entry)
            on_log(entry)
            window_losses, window_tokens, window_start = [], 0, time.perf_counter()
        if validate and _should_validate(params, step, steps, epoch_before, epoch):
            validation_started = time.perf_counter()
            value = validate()
            # Validation time is not training time: keep it out of tokens/s.
            paused = time.perf_counter() - validation_started
            window_start += paused
            started += paused
            stats.validation.append({"step": float(step), "validation_loss": value})
            if value < best_validation:
                best_validation, bad_validations = value, 0
            else:
                bad_validations += 1
            if params.apply_early_stopping and bad_validations >= params.early_stopping_patience:
                logger.info("early stopping at step %s: validation loss has not improved", step)
                stats.stopped_early = True
                break
    stats.train_seconds = time.perf_counter() - started
    # Tokens of a last, partial logging window were counted in no entry yet.
    stats.train_tokens += window_tokens
    return stats


def _accumulate_gradients(
    model: torch.nn.Module,
    batches: Sequence[dict[str, torch.Tensor]],
    device: torch.device,
    compute_dtype: torch.dtype,
) -> tuple[float, int]:
    """Backward over the micro-batches of one optimizer step; ``(mean loss per label token, input tokens)``."""
    label_tokens = max(sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches), 1)
    step_loss, tokens = 0.0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        with compute_precision(device, compute_dtype):
            loss_sum, _ = token_loss_sum(model, batch)
        (loss_sum / label_tokens).backward()
        step_loss += loss_sum.item() / label_tokens
        tokens += int(batch["attention_mask"].sum())
    return step_loss, tokens


def _should_validate(params: ComponentParams, step: int, steps: int, epoch_before: int, epoch: float) -> bool:
    if params.evaluation_strategy == "steps":
        return step % params.eval_steps == 0 and step != steps
    if params.evaluation_strategy == "epoch":
        return int(epoch) > epoch_before and step != steps
    return False
