"""``autopilot status RUN --plot``: the loss curves drawn in the terminal, in characters.

A chart of the job's short history (the points ``status`` shows as sparklines): training loss per logged step
(``•``) and validation loss where the job validated (``o``), joined by interpolated dots so a few dozen points
read as a curve; the y axis labelled at the top, middle and bottom, the x axis by first and last step. Pure text,
so it works in any terminal, pipe or log, and needs no plotting package.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

SERIES = (("loss", "•", "training loss"), ("validation_loss", "o", "validation loss"))
WIDTH = 60
HEIGHT = 12


def _points(history: Sequence[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [
        (float(p["step"]), float(p[key]))
        for p in history
        if isinstance(p.get(key), int | float) and isinstance(p.get("step"), int | float)
    ]


def loss_chart(history: Sequence[dict[str, Any]], width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    """The chart's lines, or none when the history has no loss to draw."""
    series = [(mark, label, pts) for key, mark, label in SERIES if (pts := _points(history, key))]
    if not series:
        return []
    xs = [x for _, _, pts in series for x, _ in pts]
    ys = [y for _, _, pts in series for _, y in pts]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    if y_high - y_low <= 0:  # a flat curve sits in the middle
        y_low, y_high = y_low - 0.5, y_high + 0.5
    grid = [[" "] * width for _ in range(height)]

    def cell(x: float, y: float) -> tuple[int, int]:
        col = 0 if x_high == x_low else round((x - x_low) / (x_high - x_low) * (width - 1))
        row = round((y_high - y) / (y_high - y_low) * (height - 1))
        return row, col

    for mark, _, pts in series:
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            (_, c0), (_, c1) = cell(x0, y0), cell(x1, y1)
            for col in range(c0 + 1, c1):  # the line between two points, one dot per column
                y = y0 + (y1 - y0) * (col - c0) / (c1 - c0)
                row, _ = cell(x0, y)
                if grid[row][col] == " ":
                    grid[row][col] = "·"
        for x, y in pts:
            row, col = cell(x, y)
            grid[row][col] = mark
    labels = {0: f"{y_high:.3f}", (height - 1) // 2: f"{(y_high + y_low) / 2:.3f}", height - 1: f"{y_low:.3f}"}
    pad = max(len(text) for text in labels.values())
    lines = [f"{labels.get(i, ''):>{pad}} ┤{''.join(row)}".rstrip() for i, row in enumerate(grid)]
    lines.append(f"{'':>{pad}} └{'─' * width}")
    first, last = f"step {x_low:g}", f"{x_high:g}"
    lines.append(f"{'':>{pad}}  {first}{last:>{width - len(first)}}")
    legend = "   ".join(f"{mark} {label}" for mark, label, _ in series)
    lines.append(f"{'':>{pad}}  {legend}")
    return lines


def mlflow_ui_command(tracking_uri: str) -> str:
    """The command that opens the MLflow UI on a tracking store (its runs, metrics and the loss-curve PNG)."""
    return f"mlflow ui --backend-store-uri {tracking_uri.split('?', 1)[0]}"
