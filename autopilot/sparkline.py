"""A loss curve in one line of block characters, for ``autopilot status RUN``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, scaled between the lowest (▁) and the highest (█); a flat series is all ▄."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high - low <= 0:
        return BARS[3] * len(values)
    top = len(BARS) - 1
    return "".join(BARS[round((v - low) / (high - low) * top)] for v in values)


def curve_lines(history: Sequence[dict[str, Any]]) -> list[str]:
    """``loss``, ``validation loss`` and ``token accuracy`` lines from a job's short history (steps in order)."""
    lines = []
    for key, label in (
        ("loss", "loss"),
        ("validation_loss", "validation loss"),
        ("mean_token_accuracy", "token accuracy"),
    ):
        points = [(p["step"], p[key]) for p in history if isinstance(p.get(key), int | float)]
        if not points:
            continue
        values = [v for _, v in points]
        first, last = int(points[0][0]), int(points[-1][0])
        lines.append(f"  {label}: {sparkline(values)}  {values[0]:.3f} -> {values[-1]:.3f}  (steps {first}-{last})")
    return lines
