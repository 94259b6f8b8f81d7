"""A training job's progress as numbers a person reads: the share done and the estimated finish.

The estimate is OpenAI's fine-tuning job's ``estimated_finish`` in spirit: when training would end at the pace
it has kept so far. The pace is the training time per step the platform measured (evaluations and checkpoint
saves left out, as the local recipe counts it), so an evaluation pause does not make the estimate jump; what
comes after the last step (evaluation, merge, registration) is not in it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.platform.port import TrainingProgress


def fraction_done(progress: TrainingProgress) -> float | None:
    """Steps done over steps planned, 0 to 1; None when the platform did not say how many are planned."""
    if not progress.total_steps or progress.total_steps <= 0:
        return None
    return min(max(progress.step / progress.total_steps, 0.0), 1.0)


def seconds_per_step(progress: TrainingProgress) -> float | None:
    if progress.train_seconds is None or progress.step <= 0 or progress.train_seconds < 0:
        return None
    return progress.train_seconds / progress.step


def estimated_finish(progress: TrainingProgress) -> datetime | None:
    """When the last step would end at the pace so far, counted from when the progress was reported."""
    pace = seconds_per_step(progress)
    if pace is None or progress.total_steps is None or progress.at is None:
        return None
    remaining = max(progress.total_steps - progress.step, 0)
    return progress.at + timedelta(seconds=pace * remaining)


def duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    whole = max(round(seconds), 0)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole}s"
