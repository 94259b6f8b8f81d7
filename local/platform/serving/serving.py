"""What a local endpoint keeps apart from HTTP and the model: body limits, request stats and keys.

The request models are the scoring contract's (``shared.scoring``) and OpenAI's (``openai_api``); decoding
is ``batching.BatchEngine``. ``Stats`` persists the counters the idle check reads (atomic writes). Torch-free,
as ``state.py``: the platform reads the stats and keys without loading a model.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from local.common.statefiles import read_json, write_json_atomic

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32  # the payloads nest 5 deep; deeper is an attack or a mistake, answered 400
STATS_MINUTES_KEPT = 24 * 60


# ------------------------------------------------------------------------------------------------- stats


class Stats:
    """Authenticated scoring requests: total, last time, and per-minute counts for the last day."""

    def __init__(self, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        data = read_json(path) or {}
        self.request_count = int(data.get("request_count", 0))
        self.last_request_at: str | None = data.get("last_request_at")
        self.minutes: dict[str, int] = {str(k): int(v) for k, v in (data.get("minutes") or {}).items()}

    def record(self) -> None:
        now = self._clock()
        with self._lock:
            self.request_count += 1
            self.last_request_at = now.isoformat()
            minute = now.strftime("%Y-%m-%dT%H:%M")
            self.minutes[minute] = self.minutes.get(minute, 0) + 1
            oldest = (now - timedelta(minutes=STATS_MINUTES_KEPT)).strftime("%Y-%m-%dT%H:%M")
            self.minutes = {k: v for k, v in self.minutes.items() if k >= oldest}
            write_json_atomic(self.path, self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        return {
            "request_count": self.request_count,
            "last_request_at": self.last_request_at,
            "minutes": dict(self.minutes),
        }


def activity_since(stats: dict[str, Any] | None, since: datetime) -> tuple[datetime | None, int]:
    """(last request time if at or after ``since``, requests counted in the minutes from ``since``)."""
    if not stats:
        return None, 0
    last_text = stats.get("last_request_at")
    last = datetime.fromisoformat(last_text) if isinstance(last_text, str) else None
    floor = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    count = sum(int(v) for k, v in (stats.get("minutes") or {}).items() if k >= floor)
    if last is None or last < since:
        return None, count
    return last, max(count, 1)


# -------------------------------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class Keys:
    primary: str
    secondary: str

    def __repr__(self) -> str:
        return "Keys(***)"

    @classmethod
    def load(cls, path: Path) -> Keys:
        data = read_json(path)
        if not data or not data.get("primary") or not data.get("secondary"):
            raise ValueError(f"{path.name} has no primary/secondary keys")
        return cls(str(data["primary"]), str(data["secondary"]))

    def accepts(self, candidate: str) -> bool:
        given = candidate.encode()
        # Both comparisons always run, so timing says nothing about which key (if any) matched.
        first = hmac.compare_digest(given, self.primary.encode())
        second = hmac.compare_digest(given, self.secondary.encode())
        return first or second
