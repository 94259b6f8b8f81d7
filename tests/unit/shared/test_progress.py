"""The estimated finish of a training job from what the platform reported (no clock read, no timing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.platform.port import TrainingProgress
from shared.progress import duration, estimated_finish, fraction_done, seconds_per_step

AT = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)


def test_the_finish_is_the_remaining_steps_at_the_pace_so_far() -> None:
    progress = TrainingProgress(step=12, total_steps=60, train_seconds=96.0, at=AT)
    assert seconds_per_step(progress) == 8.0
    assert estimated_finish(progress) == AT + timedelta(seconds=48 * 8.0)
    assert fraction_done(progress) == 0.2


def test_a_resumed_job_keeps_its_pace_across_the_restart() -> None:
    # The recipe's train_seconds carries the earlier attempt's time from the checkpoint, so steps and seconds
    # count from step 0 together.
    assert estimated_finish(TrainingProgress(step=40, total_steps=60, train_seconds=200.0, at=AT)) == AT + timedelta(
        seconds=100
    )


def test_the_last_step_finishes_when_it_was_reported() -> None:
    assert estimated_finish(TrainingProgress(step=60, total_steps=60, train_seconds=480.0, at=AT)) == AT


@pytest.mark.parametrize(
    "progress",
    [
        TrainingProgress(step=12, total_steps=None, train_seconds=96.0, at=AT),  # no plan of steps
        TrainingProgress(step=12, total_steps=60, train_seconds=None, at=AT),  # no timing
        TrainingProgress(step=0, total_steps=60, train_seconds=0.0, at=AT),  # no step yet
        TrainingProgress(step=12, total_steps=60, train_seconds=96.0, at=None),  # no time of report
    ],
)
def test_no_estimate_without_the_numbers_for_one(progress: TrainingProgress) -> None:
    assert estimated_finish(progress) is None


def test_share_done_is_bounded_and_absent_without_a_total() -> None:
    assert fraction_done(TrainingProgress(step=70, total_steps=60)) == 1.0
    assert fraction_done(TrainingProgress(step=3, total_steps=0)) is None


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (44.6, "45s"), (185, "3m05s"), (3725, "1h02m")])
def test_durations_read_short(seconds: float, text: str) -> None:
    assert duration(seconds) == text
