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

from local.common.statefiles import StateFileError, read_json
from local.platform.serving.state import MINUTE_FORMAT, RequestCounts

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32  # the payloads nest 5 deep; deeper is an attack or a mistake, answered 400
STATS_MINUTES_KEPT = 24 * 60


# ------------------------------------------------------------------------------------------------- stats


class Stats:
    """Authenticated scoring requests: total, last time, and per-minute counts for the last day, kept in
    ``stats.json`` (``state.RequestCounts``) across restarts of the server."""

    def __init__(self, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.counts = RequestCounts.load(path) or RequestCounts()
        except StateFileError as exc:
            log.warning("%s; counting from zero", exc)
            self.counts = RequestCounts()

    @property
    def request_count(self) -> int:
        return self.counts.request_count

    def record(self) -> None:
        now = self._clock()
        oldest = (now - timedelta(minutes=STATS_MINUTES_KEPT)).strftime(MINUTE_FORMAT)
        with self._lock:
            minutes = {k: v for k, v in self.counts.minutes.items() if k >= oldest}
            minute = now.strftime(MINUTE_FORMAT)
            minutes[minute] = minutes.get(minute, 0) + 1
            self.counts = RequestCounts(
                request_count=self.counts.request_count + 1, last_request_at=now, minutes=minutes
            )
            self.counts.save(self.path)

    def snapshot(self) -> dict[str, Any]:
        """What ``GET /metrics`` answers."""
        last = self.counts.last_request_at
        return {
            "request_count": self.counts.request_count,
            "last_request_at": last.isoformat() if last else None,
            "minutes": dict(self.counts.minutes),
        }


def activity_since(counts: RequestCounts | None, since: datetime) -> tuple[datetime | None, int]:
    """(last request time if at or after ``since``, requests counted in the minutes from ``since``)."""
    if counts is None:
        return None, 0
    floor = since.astimezone(UTC).strftime(MINUTE_FORMAT)
    count = sum(v for k, v in counts.minutes.items() if k >= floor)
    last = counts.last_request_at
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
