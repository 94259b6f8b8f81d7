"""The optimisation pieces of the recipe: optimizer and schedule from the component's parameters, the
token-level loss, evaluation, and the training loop with gradient accumulation.

The loss is the mean over label tokens of a whole optimizer step (all accumulated micro-batches), so a long
conversation weighs more than a short one, as in the Hugging Face Trainer. Each micro-batch is packed into
one row (``data.pack``) unless ``pad_to_max_length`` asks for padded rows: same conversations, same loss,
no compute on padding. On CPU a micro-batch is split into a row per stream, computed at once
(``streams``), their gradients summed in order. Checkpoints (``checkpoints``) make a killed run resumable
to the same weights.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import get_scheduler

from local.platform.training import checkpoints, dropout, output_loss, streams
from local.platform.training.data import IGNORE_INDEX, TokenizedExample, batch_indices, collate, input_tokens, pack
from shared.config.params import ComponentParams

logger = logging.getLogger(__name__)

# The output layer and loss fused (output_loss) where the architecture allows; off only to measure the gain.
FUSED_OUTPUT_LOSS = True


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


@contextlib.contextmanager
def compute_precision(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Autocast to ``dtype`` where it is lower than fp32, so matmuls run in the fast dtype while the trainable
    weights, their gradients and the optimizer state stay fp32 (the master weights); nothing in fp32.

    Under autocast, peft's cast of each LoRA layer's input to its fp32 weights' dtype is switched off: autocast
    casts it straight back to ``dtype`` for the adapter's matmul, so the round trip (exact: bf16 -> fp32 ->
    bf16 loses nothing) only cost two copies of the activations per adapted projection, both ways."""
    with adapter_casts_off(model, dtype), autocast_to(device, dtype):
        yield


@contextlib.contextmanager
def adapter_casts_off(model: torch.nn.Module, dtype: torch.dtype) -> Iterator[None]:
    """peft's per-layer input casts off where autocast is on (module flags: enter once, for every thread)."""
    if dtype == torch.float32:
        yield
        return
    from peft.helpers import disable_input_dtype_casting

    with disable_input_dtype_casting(model):
        yield


def autocast_to(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``dtype`` below fp32 (thread-local: each stream's thread enters its own)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def token_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int, int]:
    """Summed cross-entropy over label tokens, their count, and how many the model's top choice got right
    (token t is predicted at position t-1).

    Only positions that predict a label token go through the output layer (``logits_to_keep`` as a mask, or
    the fused head of ``output_loss``): with a 49k-token vocabulary that layer is a fifth of the compute, and
    most prompt positions need none.
    ``use_cache=False``: training needs no key/value cache, and with one the model would not read packed
    rows' position ids as separate sequences.
    """
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets != IGNORE_INDEX
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
    fused = output_loss.plain_head(model, training=torch.is_grad_enabled()) if FUSED_OUTPUT_LOSS else None
    if fused is not None:  # the same numbers, without materialising the logits (output_loss)
        loss, correct = output_loss.fused_token_loss(*fused, inputs, keep, targets[keep[:, :-1]])
        return loss, int(keep.sum()), correct
    logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
    # (label tokens, vocabulary), in batch-then-position order, as targets[keep] below
    logits = logits.reshape(-1, logits.size(-1))
    wanted = targets[keep[:, :-1]]
    loss = F.cross_entropy(logits.float(), wanted, reduction="sum")
    correct = int((logits.detach().argmax(-1) == wanted).sum())
    return loss, int(wanted.numel()), correct


def micro_batch(examples: Sequence[TokenizedExample], pad_token_id: int, pad_to: int | None) -> dict[str, torch.Tensor]:
    """Packed into one row, or padded rows when ``pad_to_max_length`` asked for fixed-width rows."""
    return collate(examples, pad_token_id, pad_to) if pad_to is not None else pack(examples)


@dataclass(frozen=True)
class Row:
    """One forward pass's tensors, and which conversations of the training split it holds (each with its
    positions in the row), so LoRA dropout masks them as the same conversations anywhere (``dropout``)."""

    batch: dict[str, torch.Tensor]
    conversations: tuple[int, ...] = ()  # empty: not known, plain dropout
    positions: tuple[int, ...] = ()


def _stream_rows(
    examples: Sequence[TokenizedExample], indices: Sequence[int], pad_token_id: int, pad_to: int | None, count: int
) -> list[Row]:
    """The micro-batch ``indices`` as ``count`` rows of about equal length (at most one per example), one per
    stream."""
    groups = streams.split_balanced([len(examples[i].input_ids) for i in indices], count)
    rows = []
    for group in groups:
        members = [indices[g] for g in group]
        batch = micro_batch([examples[i] for i in members], pad_token_id, pad_to)
        # Packed: each conversation is its own length of the row; padded: each is a row of the batch's width.
        positions = [len(examples[i].input_ids) if pad_to is None else batch["input_ids"].shape[1] for i in members]
        rows.append(Row(batch, tuple(members), tuple(positions)))
    return rows


@dataclass(frozen=True)
class EvalResult:
    loss: float
    perplexity: float
    tokens: int
    examples: int
    token_accuracy: float = 0.0  # share of label tokens the model's top choice predicts


# A forward-only row of packed conversations holds about this many tokens: rows much longer than a few
# conversations bought nothing on the 2-core machine (benchmarks/eval_speed.py), and it bounds the memory.
EVAL_ROW_TOKENS = 1024


def eval_rows(lengths: Sequence[int], streams_count: int, row_tokens: int = EVAL_ROW_TOKENS) -> list[list[int]]:
    """Example indices per forward pass: about ``row_tokens`` tokens each, in a multiple of the streams so
    every stream gets an equal share (longest conversations first, each to the lightest row). Packed rows
    have no padding; the grouping does not change the mean loss (it sums the same per-token losses)."""
    if not lengths:
        return []
    count = max(1, math.ceil(sum(lengths) / row_tokens))
    count = min(len(lengths), math.ceil(count / streams_count) * streams_count)
    return streams.split_balanced(lengths, count)


def evaluate(
    model: torch.nn.Module,
    examples: Sequence[TokenizedExample],
    device: torch.device,
    compute_dtype: torch.dtype = torch.float32,
    stream_count: int | None = None,
) -> EvalResult:
    """Mean loss per assistant token over the split, its perplexity and the mean token accuracy.

    Forward only (``inference_mode``), in the compute dtype, the split packed into rows of
    ``EVAL_ROW_TOKENS`` that run on every stream at once (``streams``: on a 2-CPU job each stream is a
    core). Sums are taken in row order, so the result does not depend on thread timing.
    ``per_device_eval_batch_size`` is a GPU memory setting; here the rows are bounded by tokens instead."""
    was_training = model.training
    model.eval()
    count = streams.stream_count(model, device, for_training=False) if stream_count is None else stream_count
    rows = [pack([examples[i] for i in row]) for row in eval_rows([len(e.input_ids) for e in examples], count)]

    def forward(row: dict[str, torch.Tensor]) -> tuple[float, int, int]:
        """One row on a stream's thread (inference mode and autocast are per thread)."""
        with torch.inference_mode(), autocast_to(device, compute_dtype):
            loss_sum, tokens, right = token_loss_sum(model, {k: v.to(device) for k, v in row.items()})
        return float(loss_sum), tokens, right

    try:
        with adapter_casts_off(model, compute_dtype), streams.StreamPool(count) as pool:
            results = pool.map(forward, rows)
    finally:
        model.train(was_training)
    total = sum(r[0] for r in results)
    tokens = sum(r[1] for r in results)
    correct = sum(r[2] for r in results)
    loss = total / max(tokens, 1)
    return EvalResult(
        loss=loss,
        perplexity=_perplexity(loss),
        tokens=tokens,
        examples=len(examples),
        token_accuracy=correct / max(tokens, 1),
    )


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


@dataclass
class LoopStats:
    """What the loop did, for the result and the tracking run; saved in every checkpoint's state."""

    steps: int = 0
    train_tokens: int = 0  # non-padding tokens through forward and backward
    train_seconds: float = 0.0
    step_losses: list[float] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per logging step
    validation: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    micro_batches: int = 0  # data position: micro-batches drawn from the seeded stream so far
    best_validation: float = math.inf
    bad_validations: int = 0
    best_step: int = 0  # the step of the best validation loss (0: none yet)
    resumed_from_step: int = 0  # 0: trained from the start
    restored_entries: int = 0  # history entries that came from the checkpoint (logged by the earlier run)
    # The logging window in progress, so a resumed run logs the same averages as an uninterrupted one.
    window_losses: list[float] = field(default_factory=list)
    window_tokens: int = 0
    window_labels: int = 0
    window_correct: int = 0

    def to_state(self) -> dict[str, Any]:
        state = asdict(self)
        state["best_validation"] = None if math.isinf(self.best_validation) else self.best_validation
        return state

    def add_step(self, step: int, loss: float, tokens: int, labels: int, correct: int) -> None:
        """One optimizer step done: its loss, and its counts into the logging window."""
        self.steps = step
        self.step_losses.append(loss)
        self.window_losses.append(loss)
        self.window_tokens += tokens
        self.window_labels += labels
        self.window_correct += correct

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LoopStats:
        known = {k: v for k, v in state.items() if k in cls.__dataclass_fields__}
        if known.get("best_validation") is None:
            known["best_validation"] = math.inf
        return cls(**known)


@dataclass(frozen=True)
class Checkpointing:
    """Where and when the loop saves: every ``save_steps`` steps and after each validation when the best
    checkpoint is wanted (as the Azure ML component saves after every evaluation); ``resume_from``
    continues a run from one of its checkpoints."""

    output_dir: Path
    save_steps: int
    save_total_limit: int = -1
    keep_best: bool = False  # metric_for_best_model: keep the checkpoint with the lowest validation loss
    resume_from: Path | None = None


def total_steps(params: ComponentParams, batches_per_epoch: int) -> int:
    """``max_steps`` when set (it overrides epochs, as in the component), else epochs x optimizer steps."""
    if params.max_steps > 0:
        return params.max_steps
    return params.num_train_epochs * math.ceil(batches_per_epoch / params.gradient_accumulation_steps)


def _micro_batches(
    examples: Sequence[TokenizedExample], params: ComponentParams, skip: int = 0
) -> Iterator[tuple[float, list[int]]]:
    """``(fractional epoch, example indices)`` forever: reshuffled each epoch, the loop decides when to stop.
    ``skip`` micro-batches are passed over first (a resumed run continues at its data position)."""
    lengths = [len(e.input_ids) for e in examples]
    epoch, drawn = 0, 0
    while True:
        batches = batch_indices(
            lengths, params.per_device_train_batch_size, shuffle=True, seed=params.seed, epoch=epoch
        )
        for i, indices in enumerate(batches):
            drawn += 1
            if drawn > skip:
                yield epoch + (i + 1) / len(batches), indices
        epoch += 1


def _epoch_at(examples: Sequence[TokenizedExample], params: ComponentParams, drawn: int) -> float:
    per_epoch = math.ceil(len(examples) / params.per_device_train_batch_size)
    return drawn / per_epoch if drawn else 0.0


def train(
    model: torch.nn.Module,
    examples: Sequence[TokenizedExample],
    params: ComponentParams,
    *,
    pad_token_id: int,
    device: torch.device,
    on_log: Callable[[dict[str, float]], None],
    validate: Callable[[], EvalResult] | None = None,
    compute_dtype: torch.dtype = torch.float32,
    checkpointing: Checkpointing | None = None,
) -> LoopStats:
    """Run the optimizer steps; ``on_log`` gets step, loss, mean token accuracy, learning rate, epoch,
    the tokens and training seconds so far (``trained_tokens``, ``train_seconds``; not in the history) and
    tokens/s every ``logging_steps`` (and at the last step); ``validate`` evaluates on the validation split
    when ``evaluation_strategy`` asks for it."""
    per_epoch = math.ceil(len(examples) / params.per_device_train_batch_size)
    steps = total_steps(params, per_epoch)
    optimizer = build_optimizer(model, params)
    scheduler = build_scheduler(optimizer, params, steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    pad_to = params.max_seq_length if params.pad_to_max_length and params.max_seq_length > 0 else None
    stats = _resumed(checkpointing, model, optimizer, scheduler)
    stream = _micro_batches(examples, params, skip=stats.micro_batches)
    # Streams: several rows of a micro-batch at once on CPU (streams.py); one when there is nothing to share.
    with streams.StreamPool(streams.stream_count(model, device)) as pool:
        clock = _Clock(stats.train_seconds)
        model.train()
        epoch = _epoch_at(examples, params, stats.micro_batches)
        for step in range(stats.steps + 1, steps + 1):
            epoch_before = int(epoch)
            chunk, epoch = _step_chunk(stream, params, stats, epoch)
            batches = [_stream_rows(examples, idx, pad_token_id, pad_to, pool.streams) for idx in chunk]
            step_loss, tokens, labels, correct = _accumulate_gradients(
                model, batches, device, compute_dtype, pool, trainable, seed=params.seed, step=step
            )
            learning_rate = _optimizer_step(optimizer, scheduler, trainable, params.max_grad_norm)
            stats.add_step(step, step_loss, tokens, labels, correct)
            if step % params.logging_steps == 0 or step == steps:
                _log_window(stats, step, learning_rate, epoch, clock, on_log)
            validated = False
            # Wanting the best checkpoint makes the last step a candidate too, so it is validated as well.
            final_candidate = bool(checkpointing and checkpointing.keep_best and step == steps)
            wanted = _should_validate(params, step, steps, epoch_before, epoch) or (
                final_candidate and params.evaluation_strategy != "disable"
            )
            if validate and wanted:
                with clock.paused():  # validation time is not training time: kept out of tokens/s
                    result = validate()
                validated = True
                _record_validation(stats, params, step, result)
            if checkpointing and (step % checkpointing.save_steps == 0 or (validated and checkpointing.keep_best)):
                stats.train_seconds = clock.training_seconds()
                with clock.paused():  # saving is not training either
                    _save(checkpointing, step, model, optimizer, scheduler, stats)
            if stats.stopped_early:
                break
        stats.train_seconds = clock.training_seconds()
        # Tokens of a last, partial logging window were counted in no entry yet.
        stats.train_tokens += stats.window_tokens
    return stats


class _Clock:
    """Training seconds so far and the logging window's start, for ``train_seconds`` and tokens/s; what is
    not training (validating, saving) is paused out of both."""

    def __init__(self, already: float) -> None:
        self.window_start = time.perf_counter()
        self.started = time.perf_counter() - already  # a resumed run counts its earlier attempt's seconds

    def training_seconds(self) -> float:
        return time.perf_counter() - self.started

    def window_seconds(self) -> float:
        return time.perf_counter() - self.window_start

    def new_window(self) -> None:
        self.window_start = time.perf_counter()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        began = time.perf_counter()
        yield
        paused = time.perf_counter() - began
        self.window_start += paused
        self.started += paused


def _resumed(checkpointing: Checkpointing | None, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> LoopStats:
    """Fresh stats, or those of the checkpoint to resume from (its weights, optimizer and schedule loaded)."""
    if not (checkpointing and checkpointing.resume_from):
        return LoopStats()
    state = checkpoints.load_checkpoint(
        checkpointing.resume_from, model=model, optimizer=optimizer, scheduler=scheduler
    )
    stats = LoopStats.from_state(state["loop"])
    stats.resumed_from_step = stats.steps
    stats.restored_entries = len(stats.history)
    logger.info("resuming at step %s from %s", stats.steps, checkpointing.resume_from)
    return stats


def _step_chunk(
    stream: Iterator[tuple[float, list[int]]], params: ComponentParams, stats: LoopStats, epoch: float
) -> tuple[list[list[int]], float]:
    """The micro-batches of one optimizer step and the epoch after them: up to gradient_accumulation_steps,
    but never across an epoch boundary (the component's Trainer does the same)."""
    chunk: list[list[int]] = []
    while len(chunk) < params.gradient_accumulation_steps:
        epoch, indices = next(stream)
        stats.micro_batches += 1
        chunk.append(indices)
        if epoch == int(epoch):  # the micro-batch that ended an epoch
            break
    return chunk, epoch


def _optimizer_step(optimizer: Any, scheduler: Any, trainable: Sequence[torch.nn.Parameter], max_norm: float) -> float:
    """Clip, step and schedule; the learning rate this step used."""
    torch.nn.utils.clip_grad_norm_(trainable, max_norm)
    learning_rate: float = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return learning_rate


def _log_window(
    stats: LoopStats,
    step: int,
    learning_rate: float,
    epoch: float,
    clock: _Clock,
    on_log: Callable[[dict[str, float]], None],
) -> None:
    """Close the logging window: its averages into the history and to ``on_log``, and a new window begins."""
    elapsed = clock.window_seconds()
    entry = {
        "step": float(step),
        "loss": sum(stats.window_losses) / len(stats.window_losses),
        "mean_token_accuracy": stats.window_correct / max(stats.window_labels, 1),
        "learning_rate": learning_rate,
        "epoch": round(epoch, 4),
        "tokens_per_second": stats.window_tokens / elapsed if elapsed > 0 else 0.0,
    }
    stats.train_tokens += stats.window_tokens
    stats.history.append(entry)
    # The totals so far go to progress only (OpenAI's trained_tokens; the pace for an estimate).
    on_log({**entry, "trained_tokens": float(stats.train_tokens), "train_seconds": clock.training_seconds()})
    stats.window_losses, stats.window_tokens, stats.window_labels, stats.window_correct = [], 0, 0, 0
    clock.new_window()


def _record_validation(stats: LoopStats, params: ComponentParams, step: int, result: EvalResult) -> None:
    """The validation point, the best loss so far, and whether early stopping's patience ran out."""
    stats.validation.append(
        {"step": float(step), "validation_loss": result.loss, "validation_token_accuracy": result.token_accuracy}
    )
    if result.loss < stats.best_validation:
        stats.best_validation, stats.bad_validations, stats.best_step = result.loss, 0, step
    else:
        stats.bad_validations += 1
    if params.apply_early_stopping and stats.bad_validations >= params.early_stopping_patience:
        logger.info("early stopping at step %s: validation loss has not improved", step)
        stats.stopped_early = True


def best_checkpoint(output_dir: Path, stats: LoopStats) -> Path | None:
    """The saved checkpoint of the best validation step, if it was saved."""
    if not stats.best_step:
        return None
    path = checkpoints.checkpoints_dir(output_dir) / f"{checkpoints.PREFIX}{stats.best_step}"
    return path if path.is_dir() else None


def _save(
    checkpointing: Checkpointing, step: int, model: torch.nn.Module, optimizer: Any, scheduler: Any, stats: LoopStats
) -> None:
    checkpoints.save_checkpoint(
        checkpointing.output_dir,
        step,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        state={"loop": stats.to_state()},
    )
    keep = best_checkpoint(checkpointing.output_dir, stats) if checkpointing.keep_best else None
    checkpoints.prune(checkpointing.output_dir, checkpointing.save_total_limit, keep=keep)


def _accumulate_gradients(
    model: torch.nn.Module,
    batches: Sequence[Sequence[Row]],
    device: torch.device,
    compute_dtype: torch.dtype,
    pool: streams.StreamPool | None = None,
    trainable: Sequence[torch.nn.Parameter] = (),
    *,
    seed: int = 0,
    step: int = 0,
) -> tuple[float, int, int, int]:
    """Backward over the micro-batches of one optimizer step, each one row or several rows at once
    (``streams``); ``(mean loss per label token, input tokens, label tokens, label tokens predicted right)``.
    LoRA dropout masks each row's conversations from ``(seed, step, conversation)`` (``dropout``)."""
    label_tokens = max(sum(int((r.batch["labels"][:, 1:] != IGNORE_INDEX).sum()) for rows in batches for r in rows), 1)

    def masked(row: Row) -> contextlib.AbstractContextManager[None]:
        if not row.conversations:
            return contextlib.nullcontext()
        return dropout.row_masks(seed, step, row.conversations, row.positions)

    def backward(row: Row) -> tuple[float, int]:
        """One row in this thread, its gradients accumulated into ``.grad`` by autograd."""
        with masked(row), compute_precision(model, device, compute_dtype):
            loss_sum, _, right = token_loss_sum(model, row.batch)
        (loss_sum / label_tokens).backward()
        return loss_sum.item(), right

    def gradients(row: Row) -> tuple[tuple[torch.Tensor | None, ...], float, int]:
        """One row on a stream's thread: its gradients returned, for the caller to sum in row order."""
        with masked(row), autocast_to(device, compute_dtype):
            loss_sum, _, right = token_loss_sum(model, row.batch)
        return torch.autograd.grad(loss_sum / label_tokens, trainable, allow_unused=True), loss_sum.item(), right

    step_loss, tokens, correct = 0.0, 0, 0
    for micro in batches:
        rows = [Row({k: v.to(device) for k, v in r.batch.items()}, r.conversations, r.positions) for r in micro]
        if len(rows) == 1 or pool is None:
            results = [backward(row) for row in rows]
        else:
            with adapter_casts_off(model, compute_dtype):
                streamed = pool.map(gradients, rows)
            for grads, _, _ in streamed:  # summed in row order
                _add_to_grad(trainable, grads)
            results = [(loss_value, right) for _, loss_value, right in streamed]
        for row, (loss_value, right) in zip(rows, results, strict=True):
            step_loss += loss_value / label_tokens
            tokens += input_tokens(row.batch)
            correct += right
    return step_loss, tokens, label_tokens, correct


def _add_to_grad(parameters: Sequence[torch.nn.Parameter], grads: Sequence[torch.Tensor | None]) -> None:
    for parameter, grad in zip(parameters, grads, strict=True):
        if grad is None:
            continue
        if parameter.grad is None:
            parameter.grad = grad
        else:
            parameter.grad.add_(grad)


def _should_validate(params: ComponentParams, step: int, steps: int, epoch_before: int, epoch: float) -> bool:
    if params.evaluation_strategy == "steps":
        return step % params.eval_steps == 0 and step != steps
    if params.evaluation_strategy == "epoch":
        return int(epoch) > epoch_before and step != steps
    return False
