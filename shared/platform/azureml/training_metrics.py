"""The fine-tune step's metrics, read through the workspace's MLflow tracking (azureml-mlflow), in the form the
local platform reports them: ``JobInfo.metrics`` (``eval_loss_before``/``eval_loss_after`` among them, which
``deployment.quality_gate`` reads) and ``JobInfo.history``, a short loss curve (``step``, ``loss``,
``validation_loss``) that ``autopilot status`` draws as sparklines.

What the component logs (Azure/azureml-assets at 4b41f8ccbc01cf492767adc586ce1661c54c340a):
- ``assets/training/finetune_acft_hf_nlp/src/finetune/finetune.py`` trains with the Hugging Face ``Trainer``
  (``metric_for_best_model`` defaults to ``loss``, compared as ``eval_loss``) and keeps the Trainer's metric
  names for chat completion: it turns their ``eval_``/``train_`` prefixes off (``set_log_prefix = False``) only
  for the NLP classification and NER tasks. It sets ``showMetricsAtRoot`` on its run: the metrics are also
  logged on the pipeline's root run, as the same repository's Azure ML logger does
  (``assets/training/finetune_acft_hf_nlp/environments/acpt-rft/context/tracking``, ``log_metrics_at_root``:
  each metric on the step's run and on the topmost pipeline run above it);
- the Trainer's names (transformers ``trainer.py``): every ``logging_steps`` (component default 10) ``loss``,
  ``grad_norm``, ``learning_rate``, ``epoch``; at each evaluation (``evaluation_strategy``, default once per
  epoch) ``eval_loss``, ``eval_runtime``, ``eval_samples_per_second``, ``eval_steps_per_second``; at the end
  ``train_loss``, ``train_runtime``, ``train_samples_per_second``, ``train_steps_per_second``, ``total_flos``.

An Azure ML job's name is its MLflow run id; the pipeline's steps are its descendants (the
``chat_completion_pipeline`` node, then its steps), linked by the ``mlflow.parentRunId`` tag. The step read is
the first descendant that logged a loss (one named ``finetune`` first), else the root run when only it has them.

The component evaluates on the validation split during training only (not before it, as the local trainer
does): ``eval_loss_after`` is the last evaluation, and ``eval_loss_before`` the first one when there were two or
more (``eval_loss_before_step`` says at which step); with a single evaluation there is no "before", and a quality
gate with ``require_improvement`` says so (docs/running-on-azure.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from shared.exceptions import TransientPlatformError

log = logging.getLogger(__name__)

LOSS = "loss"
EVAL_LOSS = "eval_loss"
# The Trainer's end-of-training metrics, kept as they are named.
SUMMARY_METRICS = (
    "train_loss",
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "total_flos",
    "epoch",
)
STEP_NAME = "finetune"
MAX_DEPTH = 3  # root -> pipeline component node -> its steps
MAX_CHILDREN = 100
HISTORY_POINTS = 40  # of the loss curve kept on the run, as the local platform keeps (the ledger stores it)
# MLflow error codes that a later look may not get (the tracking service throttling or failing).
TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED"}


@dataclass(frozen=True)
class TrainingMetrics:
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    step_run: str | None = None  # the MLflow run the metrics were read from


def _has_loss(run: Any) -> bool:
    metrics = run.data.metrics or {}
    return LOSS in metrics or EVAL_LOSS in metrics


def _name(run: Any) -> str:
    return str(getattr(run.info, "run_name", None) or (run.data.tags or {}).get("mlflow.runName") or "")


def finetune_run(client: Any, job_run_id: str) -> Any | None:
    """The pipeline step that logged the training loss, searched breadth first under the job's run."""
    root = client.get_run(job_run_id)
    frontier = [root]
    for _ in range(MAX_DEPTH):
        children: list[Any] = []
        for run in frontier:
            children += client.search_runs(
                [run.info.experiment_id],
                filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
                max_results=MAX_CHILDREN,
            )
        with_loss = [r for r in children if _has_loss(r)]
        if with_loss:
            named = [r for r in with_loss if STEP_NAME in _name(r).lower()]
            return (named or with_loss)[0]
        frontier = children
        if not frontier:
            break
    return root if _has_loss(root) else None


def _thinned(points: list[dict[str, float]], limit: int = HISTORY_POINTS) -> list[dict[str, float]]:
    """About ``limit`` points, evenly spread, the first, the last and every evaluation kept."""
    if len(points) <= limit:
        return points
    last = len(points) - 1
    picks = {round(i * last / (limit - 1)) for i in range(limit)}
    picks |= {i for i, p in enumerate(points) if "validation_loss" in p}
    return [points[i] for i in sorted(picks)]


def _series(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    history = client.get_metric_history(run_id, key)
    by_step = {int(m.step): float(m.value) for m in sorted(history, key=lambda m: (m.step, m.timestamp))}
    return sorted(by_step.items())


def read_training_metrics(client: Any, job_run_id: str) -> TrainingMetrics:
    """The job's training metrics and loss curve; empty when the job logged none. An MLflow error that may pass
    raises ``TransientPlatformError`` (the caller looks again later); any other is logged and reads as empty."""
    from mlflow.exceptions import MlflowException

    try:
        return _read(client, job_run_id)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in TRANSIENT_CODES:
            raise TransientPlatformError(f"reading the metrics of job {job_run_id}: {exc.message}") from None
        log.warning("job %s: its training metrics could not be read: %s", job_run_id, exc.message)
        return TrainingMetrics()


def _read(client: Any, job_run_id: str) -> TrainingMetrics:
    run = finetune_run(client, job_run_id)
    if run is None:
        return TrainingMetrics()
    run_id = run.info.run_id
    loss, evals = _series(client, run_id, LOSS), _series(client, run_id, EVAL_LOSS)
    points: dict[int, dict[str, float]] = {}
    for step, value in loss:
        points.setdefault(step, {"step": float(step)})["loss"] = value
    for step, value in evals:
        points.setdefault(step, {"step": float(step)})["validation_loss"] = value
    latest = run.data.metrics or {}
    metrics = {k: float(latest[k]) for k in SUMMARY_METRICS if isinstance(latest.get(k), int | float)}
    if "train_runtime" in metrics:
        metrics["train_seconds"] = metrics["train_runtime"]  # the local platform's name for it
    if loss:
        metrics["steps"] = float(loss[-1][0])
    if evals:
        metrics["eval_loss_after"] = evals[-1][1]
    if len(evals) >= 2:
        metrics["eval_loss_before"] = evals[0][1]
        metrics["eval_loss_before_step"] = float(evals[0][0])
    history = _thinned([points[s] for s in sorted(points)])
    return TrainingMetrics(metrics=metrics, history=history, step_run=run_id)
