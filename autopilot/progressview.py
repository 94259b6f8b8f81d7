"""What ``status --follow`` (and so the demo) shows while a run trains or deploys.

Training: a bar with the step, the loss, tokens/s, the tokens so far and an ETA (shared/progress.py), live on a
terminal (rich), one line per new step otherwise (a pipe, a log file, CI). Deploying: the time since the run
entered ``deploying`` and the deployment's provisioning state, on a change and at least every
``DEPLOY_EVERY_S`` seconds: Azure ML takes 10 to 20 minutes here and a silent terminal looks hung. The lines
are pure functions of what the platform reported and the time, so they are tested with given inputs.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from typing import Any, TextIO

from shared.platform.port import TrainingProgress
from shared.progress import duration, estimated_finish, fraction_done

DEPLOY_EVERY_S = 30.0
BAR_WIDTH = 30


def eta_text(progress: TrainingProgress, now: datetime) -> str | None:
    """``ETA 3m12s (14:05:10)``; ``ETA now`` once the estimate has passed; None without an estimate."""
    finish = estimated_finish(progress)
    if finish is None:
        return None
    left = (finish - now).total_seconds()
    if left <= 0:
        return "ETA now"
    return f"ETA {duration(left)} ({finish.astimezone():%H:%M:%S})"


def training_fields(progress: TrainingProgress, now: datetime) -> list[str]:
    """The words beside the bar: step, share, loss, tokens/s, tokens so far, ETA (those the platform gave)."""
    total = progress.total_steps
    done = fraction_done(progress)
    parts = [f"step {progress.step}/{total if total else '?'}" + (f" ({done:.0%})" if done is not None else "")]
    if progress.loss is not None:
        parts.append(f"loss {progress.loss:.3f}")
    if progress.tokens_per_second is not None:
        parts.append(f"{progress.tokens_per_second:,.0f} tok/s")
    if progress.trained_tokens is not None:
        parts.append(f"{progress.trained_tokens:,} tokens")
    eta = eta_text(progress, now)
    if eta:
        parts.append(eta)
    return parts


def text_bar(fraction: float | None, width: int = BAR_WIDTH) -> str:
    """``[#########.....................]`` for logs and pipes (the terminal gets rich's bar)."""
    if fraction is None:
        return ""
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def training_line(progress: TrainingProgress, now: datetime) -> str:
    bar = text_bar(fraction_done(progress))
    return " ".join(p for p in (bar, "  ".join(training_fields(progress, now))) if p)


def training_renderable(progress: TrainingProgress, now: datetime) -> Any:
    """The same as ``training_line``, with rich's progress bar."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    row: list[Any] = []
    if progress.total_steps:
        grid.add_column(width=BAR_WIDTH)
        row.append(ProgressBar(total=progress.total_steps, completed=progress.step, width=BAR_WIDTH))
    grid.add_column()
    row.append("  ".join(training_fields(progress, now)))
    grid.add_row(*row)
    return grid


def deploying_line(entered: datetime | None, now: datetime, state: str | None, deployment: str | None) -> str:
    """``deploying for 4m30s; deployment blue: Creating``."""
    since = f" for {duration((now - entered).total_seconds())}" if entered is not None else ""
    where = f"deployment {deployment}" if deployment else "deployment"
    return f"deploying{since}; {where}: {state or 'not reported yet'}"


def deploying_position(
    entered: datetime | None, now: datetime, state: str | None, deployment: str | None
) -> tuple[Hashable, str]:
    """The deploy's line and its key: a new key on every change of state and every ``DEPLOY_EVERY_S`` seconds,
    so off a terminal a line comes at least that often while nothing else changes."""
    elapsed = (now - entered).total_seconds() if entered is not None else 0.0
    return (state, int(elapsed // DEPLOY_EVERY_S)), deploying_line(entered, now, state, deployment)


class FollowView:
    """Lines for what happened, and one live line for where the run is: redrawn in place on a terminal,
    printed when it changes elsewhere."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._key: Hashable = None
        self._live: Any = None
        self.terminal = bool(getattr(out, "isatty", lambda: False)())

    def line(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)  # a job's words may hold brackets
        else:
            print(text, file=self.out)

    def status(self, key: Hashable, text: str, renderable: Any = None) -> None:
        """The run's current position. On a terminal ``renderable`` (or the text) replaces the last one at once;
        elsewhere the text is printed when ``key`` changes (a new step, a new state), not at every look."""
        if not self.terminal:
            if key != self._key:
                print(text, file=self.out)
            self._key = key
            return
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        if self._live is None:
            self._live = Live(console=Console(file=self.out), transient=False, auto_refresh=False)
            self._live.start()
        # Text, not markup: a job's own words may hold brackets.
        self._live.update(renderable if renderable is not None else Text(text), refresh=True)
        self._key = key

    def end_status(self) -> None:
        """Leave the last live line where it is; the next lines print below it. (Off a terminal a position
        already printed is not printed again after a state line.)"""
        if self._live is not None:
            self._live.stop()
            self._live = None
            self._key = None

    def flush(self) -> None:
        self.out.flush()
