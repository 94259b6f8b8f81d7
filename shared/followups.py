"""Follow-ups: a check of one run, sent to arrive when its answer is due (a deployment's provisioning, a canary's
window end, an endpoint's idle deadline), instead of waiting for the next timer tick.

The wire vocabulary (``FollowUp``, its JSON) and the port (``FollowUps``). Adapters: a storage queue with a
visibility delay (``followups_queue.py``); tests use the in-memory fake of tests/fakes.py. What is scheduled
when, and what a check does, is ``shared/services/followup.py``.

The port contract (tests/functional/shared/test_followups_contract.py runs it on every adapter):
- ``schedule(follow_up, delay)`` makes the message deliverable after ``delay`` (capped at ``MAX_DELAY``, the
  queue's longest visibility timeout), and returns True;
- it returns False and sends nothing when a check of the same run, kind and watch was already scheduled
  with this attempt or a later one: a message handled twice (the queue delivers at least once) schedules its
  successor once, and a late duplicate never starts a second chain of checks;
- a new watch (the run entered another state) starts at attempt 0 whatever the old watch reached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol

# Put Message: "visibilitytimeout ... cannot be larger than 7 days" (Queue service REST API,
# https://learn.microsoft.com/rest/api/storageservices/put-message). A later due time is reached in hops.
MAX_DELAY = timedelta(days=7)
MAX_MESSAGE_CHARS = 4096  # a follow-up is ~150 characters; anything far larger is not one of ours


class FollowUpKind(StrEnum):
    RUN = "run"  # the reconcile timer's per-run step (shared/services/reconcile.py: reconcile_run)
    ENDPOINT = "endpoint"  # the cleanup timer's decision on the run's endpoint (shared/services/cleanup.py)


class FollowUpError(ValueError):
    """A queue message that is not a follow-up; the message says which field is wrong."""


@dataclass(frozen=True)
class FollowUp:
    """One check: of run ``run_id``, of ``kind``, for the ``watch`` it was scheduled in (the run's state and
    when it entered it: a run that moved on makes the message stale), the ``attempt``-th with nothing changed."""

    run_id: str
    kind: FollowUpKind
    watch: str
    attempt: int = 0

    def next(self) -> FollowUp:
        """The check after this one, when this one found nothing changed."""
        return replace(self, attempt=self.attempt + 1)

    def to_json(self) -> str:
        data = {"run_id": self.run_id, "kind": self.kind.value, "watch": self.watch, "attempt": self.attempt}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> FollowUp:
        if len(text) > MAX_MESSAGE_CHARS:
            raise FollowUpError(f"message of {len(text)} characters; a follow-up has at most {MAX_MESSAGE_CHARS}")
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            raise FollowUpError(f"message is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise FollowUpError("message must be a JSON object with run_id, kind, watch and attempt")
        for name in ("run_id", "watch"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise FollowUpError(f"{name} must be a non-empty string")
        try:
            kind = FollowUpKind(str(data.get("kind")))
        except ValueError:
            raise FollowUpError(f"kind must be one of {', '.join(k.value for k in FollowUpKind)}") from None
        attempt = data.get("attempt", 0)
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
            raise FollowUpError("attempt must be a non-negative integer")
        return cls(data["run_id"], kind, data["watch"], attempt)


class FollowUps(Protocol):
    def schedule(self, follow_up: FollowUp, delay: timedelta) -> bool:
        """Deliver ``follow_up`` after ``delay``; False (nothing sent) when it, or a later attempt of its
        watch, was scheduled before."""


def capped(delay: timedelta) -> timedelta:
    """``delay`` within what a queue accepts: 0 to ``MAX_DELAY``."""
    return max(timedelta(0), min(delay, MAX_DELAY))
