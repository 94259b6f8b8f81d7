"""MLflow tracking for a training run: params, per-step metrics, before/after evaluation, a loss curve.

With no tracking URI every call is a no-op, so the recipe reads the same either way. The model itself is
saved to the job's folder, not logged here: copying hundreds of megabytes into the tracking store is slow
and the platform registers the saved folder directly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from local.platform.mlflow_store import artifact_root_beside, sqlite_path
from local.platform.stopping import deferred_cancel

logger = logging.getLogger(__name__)

MAX_PARAM_CHARS = 500


def artifact_root_for(tracking_uri: str) -> str | None:
    """Where new experiments keep artifacts: beside a SQLite store (MLflow's own default is relative to the
    working directory of whichever process created the experiment)."""
    db = sqlite_path(tracking_uri)
    return None if db is None else artifact_root_beside(db)


class Tracker:
    """One MLflow run (or nothing, when ``tracking_uri`` is None)."""

    def __init__(self, tracking_uri: str | None, experiment_name: str, run_name: str, tags: dict[str, str]) -> None:
        self.run_id: str | None = None
        self._client: Any = None
        if not tracking_uri:
            return
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=tracking_uri)
        with deferred_cancel():  # every write to the shared store runs to its end (see stopping.py)
            experiment_id = self._experiment_id(experiment_name, artifact_root_for(tracking_uri))
            run = self._client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
        self.run_id = run.info.run_id
        logger.info("tracking run %s in experiment %s", self.run_id, experiment_name)

    def _experiment_id(self, name: str, artifact_location: str | None) -> str:
        from mlflow.exceptions import MlflowException

        existing = self._client.get_experiment_by_name(name)
        if existing is not None:
            return str(existing.experiment_id)
        try:
            return str(self._client.create_experiment(name, artifact_location=artifact_location))
        except MlflowException:  # another job created it in the meantime
            again = self._client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    def log_params(self, params: dict[str, Any]) -> None:
        if not self._client:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            with deferred_cancel():
                self._client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not self._client:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        with deferred_cancel():
            self._client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path) -> None:
        if self._client:
            with deferred_cancel():
                self._client.log_artifact(self.run_id, str(path))

    def finish(self, ok: bool) -> None:
        if not self._client:
            return
        try:
            with deferred_cancel():
                self._client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")
        except Exception:  # never hide the training error behind a tracking error
            if ok:
                raise
            logger.warning("could not mark tracking run %s as failed", self.run_id, exc_info=True)


def plot_loss_curve(
    history: list[dict[str, float]],
    validation: list[dict[str, float]],
    eval_before: float,
    eval_after: float,
    path: Path,
) -> Path:
    """A PNG of training loss per logging step, validation points, and the evaluation loss before/after."""
    import matplotlib

    matplotlib.use("Agg")  # no display in a job process
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    axes.plot([h["step"] for h in history], [h["loss"] for h in history], marker="o", label="training loss")
    if validation:
        axes.plot(
            [v["step"] for v in validation], [v["validation_loss"] for v in validation], "s--", label="validation loss"
        )
    last = history[-1]["step"] if history else 1
    axes.scatter([0, last], [eval_before, eval_after], color="red", zorder=3, label="evaluation loss before/after")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (mean per assistant token)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
