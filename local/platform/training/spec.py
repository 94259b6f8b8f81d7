"""What a training job is asked to do (``TrainingSpec``) and what it reports back (``TrainingResult``).

Both round-trip through JSON: the platform writes the spec next to the job and the job process reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.config.params import ComponentParams

LOSS_CURVE_FILE = "loss_curve.png"  # in output_dir: training and validation loss per step, and eval before/after
HISTORY_FILE = "loss_history.json"  # in output_dir, {"points": [...]}: the short curve reported with the job
MAX_HISTORY_POINTS = 40


class TrainingError(RuntimeError):
    """The job cannot run as specified (bad parameters, unusable data); the message says what to fix."""


_PATH_FIELDS = {"model_dir", "output_dir", "train_file", "validation_file", "test_file"}


@dataclass
class TrainingSpec:
    """One fine-tuning job: the model, the data, the effective component parameters and where to report."""

    job_name: str
    model_name: str
    model_dir: Path  # the materialised Hugging Face directory of the foundation model
    output_dir: Path  # the job's own folder; the MLflow model goes to ``output_dir / "trained_model"``
    params: dict[str, Any]  # effective component parameters (shared.config.params.ComponentParams names)
    train_file: Path
    validation_file: Path | None = None
    test_file: Path | None = None
    device: str = "cpu"
    mlflow_tracking_uri: str | None = None
    experiment_name: str = "autopilot-local"
    run_name: str | None = None  # defaults to the job name
    tags: dict[str, str] = field(default_factory=dict)
    # Continue from the latest complete checkpoint in output_dir if there is one (a restarted job process;
    # the component's resume_from_checkpoint means the same).
    resume: bool = False

    def __post_init__(self) -> None:
        for name in _PATH_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))

    def typed_params(self) -> ComponentParams:
        """The parameters checked against the component's inputs; ``TrainingError`` names each bad one."""
        values = dict(self.params)
        # The component's wire format carries these two as strings ("2", "16"): accept both forms.
        if isinstance(values.get("deepspeed_stage"), str) and values["deepspeed_stage"].strip() in {"2", "3"}:
            values["deepspeed_stage"] = int(values["deepspeed_stage"])
        if isinstance(values.get("precision"), int) and not isinstance(values["precision"], bool):
            values["precision"] = str(values["precision"])
        try:
            return ComponentParams.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"params.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
            raise TrainingError(f"invalid training parameters: {problems}") from None

    def to_json(self) -> str:
        data = asdict(self)
        for name in _PATH_FIELDS:
            if data[name] is not None:
                data[name] = str(data[name])
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainingSpec:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"unknown training spec fields: {', '.join(unknown)}")
        return cls(**data)


@dataclass
class TrainingResult:
    """Metrics (loss and perplexity before/after, throughput), notes for the user, the saved model."""

    metrics: dict[str, float]
    notes: list[str]
    model_path: Path
    mlflow_run_id: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per logging step

    def to_json(self) -> str:
        data = asdict(self)
        data["model_path"] = str(self.model_path)
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainingResult:
        data = json.loads(text)
        data["model_path"] = Path(data["model_path"])
        return cls(**data)


def short_history(
    history: list[dict[str, float]], validation: list[dict[str, float]], limit: int = MAX_HISTORY_POINTS
) -> list[dict[str, float]]:
    """At most ``limit`` training points (evenly spaced, first and last kept) and as many validation points,
    merged by step: ``{"step", "loss", "mean_token_accuracy"}`` and/or ``{"validation_loss"}``."""
    by_step: dict[float, dict[str, float]] = {}
    for series, keys in ((history, ("loss", "mean_token_accuracy")), (validation, ("validation_loss",))):
        for entry in _evenly(series, limit):
            point = by_step.setdefault(float(entry["step"]), {"step": float(entry["step"])})
            point.update({k: round(float(entry[k]), 5) for k in keys if k in entry})
    return [by_step[step] for step in sorted(by_step)]


def _evenly(series: list[dict[str, float]], limit: int) -> list[dict[str, float]]:
    if len(series) <= limit:
        return list(series)
    last = len(series) - 1
    picks = sorted({round(i * last / (limit - 1)) for i in range(limit)})
    return [series[i] for i in picks]
