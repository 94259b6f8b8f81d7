"""How long a job's start-up phases take (imports, tracking, model, tokenizer, data), for one log line.

Why: the time between "starting" and the first step is a user's wait like any other (issue 21 measured 27 s
before training began on the 2-core machine); logged per phase, the next cut is chosen by a number.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class Phases:
    """Named phases in the order they ran, each with its seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + max(0.0, seconds)

    def line(self) -> str:
        """``imports 3.1 s, model 2.0 s (total 5.1 s)``."""
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
        return f"{parts} (total {sum(self.seconds.values()):.1f} s)"

    def rounded(self) -> dict[str, float]:
        return {name: round(seconds, 2) for name, seconds in self.seconds.items()}
