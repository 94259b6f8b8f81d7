"""The one-line progress of a local job, as ``autopilot status`` shows it: from the recipe's progress updates
(``step 12/60 loss 1.83 1020 tok/s``, or a phase), with a restarted job's restarts said on each line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def one_line(exc: BaseException, limit: int = 500) -> str:
    """An error as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    line = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return line[:limit]


def progress_line(update: Mapping[str, Any]) -> str | None:
    """``step 12/60 loss 1.83 1020 tok/s`` from a recipe progress update; a phase becomes a short line."""
    if "phase" in update:
        line = str(update["phase"]).replace("_", " ")
        if update.get("split"):
            line += f" on {update['split']}"
        if isinstance(update.get("examples"), int):
            line += f" ({update['examples']} examples)"
        if isinstance(update.get("resumed_from_step"), int):
            line += f" (resuming from the checkpoint of step {update['resumed_from_step']})"
        return line
    if "step" not in update:
        return None
    parts = [f"step {update['step']}/{update.get('total_steps', '?')}"]
    if isinstance(update.get("loss"), int | float):
        parts.append(f"loss {update['loss']:.2f}")
    if isinstance(update.get("tokens_per_second"), int | float):
        parts.append(f"{update['tokens_per_second']:.0f} tok/s")
    return " ".join(parts)


def restart_suffix(restarts: int, resumed_from_step: int | None, *, said: bool = False) -> str:
    """`` (restarted 1x, resumed from step 4)`` on a restarted job's lines (the step once this attempt has
    loaded its checkpoint, unless the line itself ``said`` it); nothing for a job never restarted."""
    if not restarts:
        return ""
    where = f", resumed from step {resumed_from_step}" if resumed_from_step is not None and not said else ""
    return f" (restarted {restarts}x{where})"
