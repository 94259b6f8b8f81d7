"""The local fine-tuning recipe: ``run_training(TrainingSpec) -> TrainingResult``.

``TrainingSpec`` and ``TrainingResult`` import nothing heavy, so the control plane can build and read them;
``run_training`` imports torch, transformers and peft on first call (in the job process).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from local.platform.training.spec import TrainingError, TrainingResult, TrainingSpec

__all__ = ["TrainingError", "TrainingResult", "TrainingSpec", "run_training"]


def run_training(spec: TrainingSpec, progress: Callable[[dict[str, Any]], None] | None = None) -> TrainingResult:
    """Validate data, tokenise, fine-tune, evaluate before/after, merge and save; see ``recipe``."""
    from local.platform.training.recipe import run_training as run

    return run(spec, progress)
