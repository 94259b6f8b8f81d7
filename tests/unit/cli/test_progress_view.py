"""What ``status --follow`` prints while a run trains and deploys, from given reports and times."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from autopilot.progressview import (
    FollowView,
    deploying_line,
    deploying_position,
    eta_text,
    text_bar,
    training_line,
    training_renderable,
)
from shared.platform.port import TrainingProgress

AT = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)
STEP_12 = TrainingProgress(
    step=12, total_steps=60, loss=1.8312, tokens_per_second=1020.4, trained_tokens=24480, train_seconds=96.0, at=AT
)


def _clock(moment: datetime) -> str:
    return f"{moment.astimezone():%H:%M:%S}"


def test_the_training_line_has_the_bar_step_loss_speed_tokens_and_eta() -> None:
    finish = AT + timedelta(seconds=48 * 8)
    assert training_line(STEP_12, AT + timedelta(seconds=10)) == (
        "[######........................] step 12/60 (20%)  loss 1.831  1,020 tok/s  24,480 tokens  "
        f"ETA 6m14s ({_clock(finish)})"
    )


def test_what_the_platform_did_not_report_is_left_out() -> None:
    bare = TrainingProgress(step=5)
    assert training_line(bare, AT) == "step 5/?"
    assert eta_text(bare, AT) is None
    assert text_bar(None) == ""


def test_a_passed_estimate_reads_now_not_a_negative_time() -> None:
    assert eta_text(STEP_12, AT + timedelta(hours=1)) == "ETA now"


def test_the_terminal_gets_richs_bar_with_the_same_words() -> None:
    buffer = io.StringIO()
    Console(file=buffer, width=160, color_system=None).print(training_renderable(STEP_12, AT))
    text = buffer.getvalue()
    assert "━" in text  # rich's bar
    assert "step 12/60 (20%)  loss 1.831  1,020 tok/s  24,480 tokens  ETA 6m24s" in text


def test_the_deploying_line_says_how_long_and_the_provisioning_state() -> None:
    assert deploying_line(AT, AT + timedelta(seconds=272), "Creating", "blue") == (
        "deploying for 4m32s; deployment blue: Creating"
    )
    assert deploying_line(None, AT, None, None) == "deploying; deployment: not reported yet"


def test_off_a_terminal_a_position_is_printed_once_per_key() -> None:
    out = io.StringIO()
    view = FollowView(out)
    assert not view.terminal
    view.status(("step", 12), "step 12, ETA 6m14s")
    view.status(("step", 12), "step 12, ETA 6m12s")  # the same step a look later: not again
    view.status(("step", 13), "step 13, ETA 6m05s")
    view.line("07:01:00  run-1: completed")
    assert out.getvalue().splitlines() == ["step 12, ETA 6m14s", "step 13, ETA 6m05s", "07:01:00  run-1: completed"]


def test_off_a_terminal_a_state_line_does_not_repeat_the_position() -> None:
    out = io.StringIO()
    view = FollowView(out)
    view.status(("phase", "starting"), "starting")
    view.end_status()
    view.line("run-1: running")
    view.status(("phase", "starting"), "starting")
    assert out.getvalue().splitlines() == ["starting", "run-1: running"]


def test_a_deploy_that_waits_gets_a_line_at_least_every_30_seconds_and_on_each_change() -> None:
    out = io.StringIO()
    view = FollowView(out)
    for seconds, state in ((2, "Creating"), (20, "Creating"), (29, "Creating"), (31, "Creating"), (40, "Updating")):
        key, line = deploying_position(AT, AT + timedelta(seconds=seconds), state, "d-1")
        view.status(key, line)
    assert out.getvalue().splitlines() == [
        "deploying for 2s; deployment d-1: Creating",
        "deploying for 31s; deployment d-1: Creating",
        "deploying for 40s; deployment d-1: Updating",
    ]


def test_on_a_terminal_a_jobs_words_are_shown_as_written_not_as_markup() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    view = FollowView(out)
    view.status(("phase", 1), "queued: [position 2] at most 1 job(s) run at once")
    view.end_status()
    assert "[position 2]" in out.getvalue()
