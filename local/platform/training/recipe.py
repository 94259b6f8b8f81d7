"""The local fine-tuning recipe, step for step like the Azure ML ``chat_completion_pipeline``:

validate data -> apply the chat template, labels on assistant tokens only -> LoRA (or full) fine-tune ->
loss and perplexity on the evaluation split before and after -> merge LoRA -> save an MLflow model.

The evaluation split is the test file, else the validation file, else 10% of train held out (the component
also carves its missing splits out of train). Settings that only mean something on a GPU cluster
(DeepSpeed, ORT, precision 16 on CPU, several nodes) are accepted and reported in the result's notes.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

from local.platform.dataset import validate_chat_file
from local.platform.mlflow_model import ADAPTER_DIR, HF_ARTIFACT, save_chat_model
from local.platform.models import pick_dtype
from local.platform.startup import Phases
from local.platform.training import checkpoints
from local.platform.training.attention import use_packed_attention
from local.platform.training.data import TokenizedSplit, holdout, read_conversations, tokenize_split
from local.platform.training.loop import (
    Checkpointing,
    EvalResult,
    LoopStats,
    best_checkpoint,
    evaluate,
    total_steps,
    train,
)
from local.platform.training.lora import merged_in_fp32, with_lora
from local.platform.training.spec import (
    HISTORY_FILE,
    LOSS_CURVE_FILE,
    TrainingError,
    TrainingResult,
    TrainingSpec,
    short_history,
)
from local.platform.training.tracking import Tracker, plot_loss_curve
from shared.config.params import ComponentParams

logger = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
HOLDOUT_FRACTION = 0.1
TRAINED_MODEL = "trained_model"
ADAPTER_OUTPUT = "lora_adapter"
MAX_DEFAULT_SEQ_LENGTH = 2048


# What ``train``'s log entries carry for the job's progress line only: totals, not metrics of a step.
PROGRESS_ONLY = ("step", "trained_tokens", "train_seconds")


@dataclass(frozen=True)
class Job:
    """What every phase of one run reads, and where it reports: the progress callback, the tracking run, the
    start-up phases' clock and the notes for the result (settings that mean something else here, in words)."""

    spec: TrainingSpec
    params: ComponentParams
    device: torch.device
    dtype: torch.dtype
    report: Progress
    notes: list[str]
    startup: Phases
    tracker: Tracker


@dataclass(frozen=True)
class Splits:
    """The tokenised data: what is trained on, what is evaluated before and after, what validates during."""

    train: TokenizedSplit
    evaluation: TokenizedSplit
    validation: TokenizedSplit | None
    max_length: int  # the sequence length every split was cut at


def run_training(spec: TrainingSpec, progress: Progress | None = None) -> TrainingResult:
    """Run the job; ``progress`` gets ``{"phase": ...}`` at each phase (evaluate_before, train, evaluate_after,
    merge, save) and ``{"step", "total_steps", "loss", "learning_rate", "epoch", "tokens_per_second"}`` at every
    logging step (also ``mean_token_accuracy``). Checkpoints go to ``output_dir/checkpoints`` every
    ``save_steps``; ``spec.resume`` or ``resume_from_checkpoint`` continues from the latest.
    Raises ``TrainingError`` for bad parameters or data, before any model loads."""
    job = start(spec, progress)
    tracker = job.tracker
    try:
        with job.startup.phase("tracking run"):
            tracker.log_params(
                {
                    **job.params.model_dump(),
                    "model_name": spec.model_name,
                    "device": str(job.device),
                    "dtype": str(job.dtype),
                }
            )
        tokenizer, model = load_model(job)
        splits = load_data(job, tokenizer, model)
        model = add_adapters(job, model, splits.max_length)
        pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        resume_from = resume_point(spec, job.params, job.notes)
        before = evaluate_before(job, model, splits.evaluation)
        stats = train_model(job, model, splits, before, resume_from, pad_id)
        after, metrics = evaluate_after(job, model, splits.evaluation, before, stats)
        model_path = save_outputs(job, model, tokenizer, stats, before, after)
        tracker.finish(ok=True)
    except BaseException:
        tracker.finish(ok=False)
        raise
    logger.info(
        "job %s: eval loss %.4f -> %.4f in %s steps (%.0f tokens/s)",
        spec.job_name,
        before.loss,
        after.loss,
        stats.steps,
        metrics["tokens_per_second"],
    )
    return TrainingResult(
        metrics=metrics, notes=job.notes, model_path=model_path, mlflow_run_id=tracker.run_id, history=stats.history
    )


def start(spec: TrainingSpec, progress: Progress | None) -> Job:
    """Check what can be checked before any model loads (parameters, device, every data file, with line
    numbers: a bad file fails in seconds), then open the tracking run."""
    report: Progress = progress or (lambda event: None)
    params = spec.typed_params()
    device = torch.device(spec.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device cuda (compute local-cuda) asked for, but this machine's torch sees no CUDA GPU")
    dtype = pick_dtype(device)
    notes = not_applicable_notes(params, device, dtype)
    startup = Phases()  # logged, and reported with evaluate_before: what the wait before the first step was
    with startup.phase("data check"):
        check_data_files(spec)
    with startup.phase("tracking run"):
        tracker = Tracker(spec.mlflow_tracking_uri, spec.experiment_name, spec.run_name or spec.job_name, spec.tags)
    return Job(spec, params, device, dtype, report, notes, startup, tracker)


def load_model(job: Job) -> tuple[Any, Any]:
    """``(tokenizer, model)`` of the foundation model, on the job's device."""
    with job.startup.phase("tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(job.spec.model_dir)
    # LoRA: the frozen base in the compute dtype (half the memory traffic in bf16), adapters in fp32. A
    # full fine-tune keeps fp32 master weights and computes under autocast.
    base_dtype = job.dtype if job.params.apply_lora else torch.float32
    with job.startup.phase("model load"):
        model: Any = AutoModelForCausalLM.from_pretrained(job.spec.model_dir, dtype=base_dtype)
        model.to(job.device)
        use_packed_attention(model)  # packed rows: one attention call per conversation, no T x T mask
    return tokenizer, model


def load_data(job: Job, tokenizer: Any, model: Any) -> Splits:
    """Preprocess: chat template, assistant-only labels, truncation to max_seq_length."""
    max_length = sequence_length(job.params, model, job.notes)
    with job.startup.phase("data"):
        train_split, eval_split, validation_split = tokenize_splits(
            job.spec, job.params, tokenizer, max_length, job.notes
        )
    logger.info(
        "job %s: %s training examples (%s tokens), evaluation on %s (%s examples)",
        job.spec.job_name,
        len(train_split.examples),
        train_split.tokens,
        eval_split.name,
        len(eval_split.examples),
    )
    return Splits(train_split, eval_split, validation_split, max_length)


def add_adapters(job: Job, model: Any, max_length: int) -> Any:
    """LoRA adapters (or every weight trainable, for a full fine-tune); seeded so a rerun starts identically."""
    with job.startup.phase("adapters"):
        set_seed(job.params.seed)
        if job.params.apply_lora:
            model = with_lora(model, job.params)
        else:
            model.requires_grad_(True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    job.tracker.log_params({"trainable_parameters": trainable, "max_seq_length_used": max_length})
    return model


def evaluate_on(job: Job, model: Any, split: TokenizedSplit) -> EvalResult:
    return evaluate(model, split.examples, job.device, job.dtype)


def evaluate_before(job: Job, model: Any, split: TokenizedSplit) -> EvalResult:
    """The model before its first training step, on the evaluation split; tracked at step 0."""
    logger.info("job %s: recipe start-up: %s", job.spec.job_name, job.startup.line())
    job.report(
        {
            "phase": "evaluate_before",
            "split": split.name,
            "examples": len(split.examples),
            "mlflow_run_id": job.tracker.run_id,  # known now, so a job killed later can still be found
            "startup_seconds": job.startup.rounded(),
        }
    )
    before = evaluate_on(job, model, split)
    job.tracker.log_metrics(
        {
            "eval_loss_before": before.loss,
            "perplexity_before": before.perplexity,
            "eval_token_accuracy_before": before.token_accuracy,
        },
        step=0,
    )
    return before


def train_model(
    job: Job, model: Any, splits: Splits, before: EvalResult, resume_from: Path | None, pad_id: int
) -> LoopStats:
    """The training loop, its logging steps to the tracking run and to progress."""
    params = job.params
    total = total_steps(params, -(-len(splits.train.examples) // params.per_device_train_batch_size))

    def on_log(entry: dict[str, float]) -> None:
        step = int(entry["step"])
        job.tracker.log_metrics({k: v for k, v in entry.items() if k not in PROGRESS_ONLY}, step=step)
        job.report({**entry, "step": step, "total_steps": total})

    started = {"phase": "train", "total_steps": total, "eval_loss_before": before.loss}
    if resume_from is not None:
        # Said before the first step, so a restarted job's status shows where it continues from.
        started["resumed_from_step"] = int(checkpoints.read_state(resume_from)["step"])
    job.report(started)
    validation = splits.validation
    validate = (lambda: evaluate_on(job, model, validation)) if validation else None
    keep_best = params.metric_for_best_model is not None and validation is not None
    if params.metric_for_best_model in ("f1", "exact"):
        job.notes.append(f"metric_for_best_model {params.metric_for_best_model}: not computed locally; loss used")
    stats = train(
        model,
        splits.train.examples,
        params,
        pad_token_id=pad_id,
        device=job.device,
        on_log=on_log,
        validate=validate,
        compute_dtype=job.dtype,
        checkpointing=Checkpointing(
            output_dir=job.spec.output_dir,
            save_steps=params.save_steps,
            save_total_limit=params.save_total_limit,
            keep_best=keep_best,
            resume_from=resume_from,
        ),
    )
    record_training(job, model, stats, keep_best)
    return stats


def record_training(job: Job, model: Any, stats: LoopStats, keep_best: bool) -> None:
    """After the loop: the whole curve and the validation points in the tracking run, the best checkpoint's
    weights kept when asked for, and notes on resuming and early stopping."""
    if stats.resumed_from_step:
        job.notes.append(f"resumed from the checkpoint of step {stats.resumed_from_step}")
        # The earlier attempt logged these to its own tracking run; this run shows the whole curve.
        for entry in stats.history[: stats.restored_entries]:
            job.tracker.log_metrics({k: v for k, v in entry.items() if k != "step"}, step=int(entry["step"]))
    for point in stats.validation:
        job.tracker.log_metrics({k: v for k, v in point.items() if k != "step"}, step=int(point["step"]))
    if keep_best:
        use_best_checkpoint(job.spec, model, stats, job.notes)
    if stats.stopped_early:
        job.notes.append(f"early stopping after step {stats.steps}: validation loss stopped improving")


def evaluate_after(
    job: Job, model: Any, split: TokenizedSplit, before: EvalResult, stats: LoopStats
) -> tuple[EvalResult, dict[str, float]]:
    """The fine-tuned model on the same split as before; ``(its result, the run's metrics)``, both tracked."""
    job.report({"phase": "evaluate_after", "split": split.name, "examples": len(split.examples)})
    after = evaluate_on(job, model, split)
    metrics = run_metrics(before, after, stats)
    # "tokens_per_second" is already a per-step series in the run; the whole-run figure gets its own name.
    summary = {k: v for k, v in metrics.items() if k != "tokens_per_second"}
    job.tracker.log_metrics({**summary, "train_tokens_per_second": metrics["tokens_per_second"]}, step=stats.steps)
    return after, metrics


def run_metrics(before: EvalResult, after: EvalResult, stats: LoopStats) -> dict[str, float]:
    """The result's metrics: evaluation before and after, and what training did."""
    metrics = {
        "eval_loss_before": before.loss,
        "eval_loss_after": after.loss,
        "perplexity_before": before.perplexity,
        "perplexity_after": after.perplexity,
        "train_loss": sum(stats.step_losses) / max(len(stats.step_losses), 1),
        "train_tokens": float(stats.train_tokens),
        "train_seconds": stats.train_seconds,
        "tokens_per_second": stats.train_tokens / stats.train_seconds if stats.train_seconds > 0 else 0.0,
        "steps": float(stats.steps),
        "eval_tokens": float(after.tokens),
        "eval_token_accuracy_before": before.token_accuracy,
        "eval_token_accuracy_after": after.token_accuracy,
    }
    if stats.history:
        metrics["mean_token_accuracy"] = stats.history[-1]["mean_token_accuracy"]
    return metrics


def save_outputs(job: Job, model: Any, tokenizer: Any, stats: LoopStats, before: EvalResult, after: EvalResult) -> Path:
    """The loss curve and the short history beside the model, then the model: adapters merged into the
    weights (unless told not to) and saved as an MLflow model; its path."""
    spec = job.spec
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    curve = plot_loss_curve(stats.history, stats.validation, before.loss, after.loss, spec.output_dir / LOSS_CURVE_FILE)
    job.tracker.log_artifact(curve)
    write_short_history(spec, stats)
    return save_model(spec, job.params, model, tokenizer, job.report, job.notes)


def resume_point(spec: TrainingSpec, params: ComponentParams, notes: list[str]) -> Path | None:
    """The checkpoint to continue from when the spec (a restarted job) or the config asks for it; otherwise
    any checkpoint of an earlier attempt is cleared so the two cannot mix."""
    if not (spec.resume or params.resume_from_checkpoint):
        checkpoints.clear(spec.output_dir)
        return None
    latest = checkpoints.latest_checkpoint(spec.output_dir)
    if latest is None:
        notes.append("resume requested but no checkpoint saved yet: trained from the start")
    return latest


def use_best_checkpoint(spec: TrainingSpec, model: Any, stats: LoopStats, notes: list[str]) -> None:
    """metric_for_best_model: the weights of the best validation loss become the model (as the component
    outputs its best model), when they are not the last ones anyway."""
    best = best_checkpoint(spec.output_dir, stats)
    if best is None or stats.best_step == stats.steps:
        return
    checkpoints.load_weights(best, model)
    notes.append(
        f"best checkpoint kept: step {stats.best_step} (validation loss {stats.best_validation:.4f}) "
        f"of {stats.steps} steps"
    )


def write_short_history(spec: TrainingSpec, stats: LoopStats) -> None:
    """The downsampled curve beside the model, where the platform reads it for the run's status."""
    curve = short_history(stats.history, stats.validation)
    (spec.output_dir / HISTORY_FILE).write_text(json.dumps({"points": curve}), encoding="utf-8")


def check_data_files(spec: TrainingSpec) -> None:
    """Every given file must be a readable chat file with no bad rows (training files end in an answer)."""
    files = [(spec.train_file, True), (spec.validation_file, False), (spec.test_file, False)]
    reports = [validate_chat_file(path, training=training) for path, training in files if path is not None]
    bad = [r.summary() for r in reports if not r.ok]
    if bad:
        raise TrainingError("data validation failed: " + "; ".join(bad))


def sequence_length(params: ComponentParams, model: Any, notes: list[str]) -> int:
    context = int(getattr(model.config, "max_position_embeddings", MAX_DEFAULT_SEQ_LENGTH))
    if params.max_seq_length > 0:
        if params.max_seq_length > context:
            notes.append(f"max_seq_length {params.max_seq_length} exceeds the model's context; using {context}")
        return min(params.max_seq_length, context)
    length = min(context, MAX_DEFAULT_SEQ_LENGTH)
    notes.append(f"max_seq_length -1: sequences cut at {length} tokens")
    return length


def tokenize_splits(
    spec: TrainingSpec, params: ComponentParams, tokenizer: Any, max_length: int, notes: list[str]
) -> tuple[TokenizedSplit, TokenizedSplit, TokenizedSplit | None]:
    """``(train, evaluation, validation during training or None)``."""
    train_conversations = read_conversations(spec.train_file, training=True)
    validation = read_conversations(spec.validation_file, training=False) if spec.validation_file is not None else None
    if spec.test_file is not None:
        eval_name, eval_conversations = "test", read_conversations(spec.test_file, training=False)
    elif validation is not None:
        eval_name, eval_conversations = "validation", validation
    else:
        if len(train_conversations) < 2:
            raise TrainingError("train_file needs at least 2 conversations when no test or validation file is given")
        train_conversations, eval_conversations = holdout(train_conversations, HOLDOUT_FRACTION, params.seed)
        eval_name = "holdout"
        notes.append(
            f"no test or validation file: {len(eval_conversations)} training conversations "
            f"({HOLDOUT_FRACTION:.0%}) held out for evaluation"
        )
    splits = {
        "train": tokenize_split("train", tokenizer, train_conversations, max_length),
        eval_name: tokenize_split(eval_name, tokenizer, eval_conversations, max_length),
    }
    validation_split = None
    if validation is not None and params.evaluation_strategy != "disable":
        validation_split = splits.get("validation") or tokenize_split("validation", tokenizer, validation, max_length)
        splits["validation"] = validation_split
    elif params.evaluation_strategy == "steps" or params.apply_early_stopping:
        notes.append("no validation file: no evaluation during training, so no early stopping")
    for split in splits.values():
        if split.truncated:
            notes.append(f"{split.name}: {split.truncated} conversations cut at max_seq_length {max_length}")
        if split.skipped_no_labels:
            notes.append(f"{split.name}: {split.skipped_no_labels} conversations without assistant tokens skipped")
    if not splits["train"].examples:
        raise TrainingError("no training example has assistant tokens within max_seq_length")
    if not splits[eval_name].examples:
        raise TrainingError(f"the {eval_name} split has no assistant tokens to evaluate on")
    return splits["train"], splits[eval_name], validation_split


def save_model(
    spec: TrainingSpec, params: ComponentParams, model: Any, tokenizer: Any, report: Progress, notes: list[str]
) -> Path:
    staging = spec.output_dir / HF_ARTIFACT
    shutil.rmtree(staging, ignore_errors=True)
    if params.apply_lora:
        # The trained adapters on their own (fp32), beside the MLflow model: what was trained, unrounded.
        model.save_pretrained(spec.output_dir / ADAPTER_OUTPUT)
    if params.apply_lora and params.merge_lora_weights:
        report({"phase": "merge"})
        model = merged_in_fp32(model, spec.model_dir)
    report({"phase": "save"})
    if params.apply_lora and not params.merge_lora_weights:
        # Base weights untouched plus the adapter beside them; the chat model merges when it loads.
        shutil.copytree(spec.model_dir, staging)
        model.save_pretrained(staging / ADAPTER_DIR)
        notes.append("merge_lora_weights false: the model is saved as base weights plus a LoRA adapter")
    else:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    metadata = {"base_model": spec.model_name, "job_name": spec.job_name}
    path = save_chat_model(staging, spec.output_dir / TRAINED_MODEL, metadata=metadata)
    shutil.rmtree(staging, ignore_errors=True)
    return path


def not_applicable_notes(params: ComponentParams, device: torch.device, dtype: torch.dtype) -> list[str]:
    """Component settings accepted for compatibility but without effect here, in words for the user."""
    where = "on CPU" if device.type == "cpu" else "on a single local GPU"
    notes = [f"trained in {str(dtype).removeprefix('torch.')} {where}"]
    if params.apply_deepspeed:
        notes.append(f"apply_deepspeed (stage {params.deepspeed_stage}) is not applicable {where}; ignored")
    if params.apply_ort:
        notes.append(f"apply_ort (ONNX Runtime training) is not applicable {where}; ignored")
    if params.precision == "16":
        notes.append(f"precision 16 is not applicable {where}; trained in {str(dtype).removeprefix('torch.')}")
    if params.num_nodes_finetune > 1:
        notes.append(f"num_nodes_finetune {params.num_nodes_finetune}: the local platform trains on one node")
    if params.auto_find_batch_size:
        notes.append("auto_find_batch_size is not applicable locally; per_device_train_batch_size is used")
    return notes
