"""The typed parts of a run record, and their stored (JSON) form.

Each part is read and written through its type; ``to_json`` / ``from_json`` are the only places that know the
stored shape, which is also what the status blob shows (shared/status.py). A value that is unset is left out of
the stored form, so a part reads as it grew (a canary's observations appear once it was observed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from shared.exceptions import FieldIssue
from shared.ledger.limits import (
    MAX_ERROR_MESSAGE_CHARS,
    MAX_ERROR_PATH_CHARS,
    MAX_ERRORS_KEPT,
    MAX_FIELD_JSON_CHARS,
    json_chars,
)
from shared.states import RolloutPhase, check_phase_move

Decision = Literal["approved", "rejected"]
DECISIONS: tuple[Decision, ...] = ("approved", "rejected")
ROLE_CANARY = "canary"  # the stored form's marker of a rollout that deployed onto another run's endpoint


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def stamp(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def errors_to_json(errors: list[FieldIssue]) -> list[dict[str, str]]:
    return [{"path": e.path, "message": e.message} for e in errors]


def errors_from_json(data: Any) -> list[FieldIssue]:
    return [FieldIssue(str(e.get("path") or ""), str(e.get("message") or "")) for e in data or []]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summarised(issues: list[FieldIssue], budget: int = MAX_FIELD_JSON_CHARS) -> list[FieldIssue]:
    """The problems as a run keeps them: each path and message cut short, the first ``MAX_ERRORS_KEPT`` that
    fit ``budget`` characters of stored JSON, and one last line counting the rest. So a config with any number
    of errors, however long its keys, is still rejected with its reasons (a run that cannot be stored would
    stay ``received``)."""
    cut = [FieldIssue(_cut(i.path, MAX_ERROR_PATH_CHARS), _cut(i.message, MAX_ERROR_MESSAGE_CHARS)) for i in issues]
    # Room for the counting line, whatever the count.
    room = budget - json_chars(errors_to_json([FieldIssue("", _more(len(cut), len(cut)))])) - 2
    kept: list[FieldIssue] = []
    used = 0
    for issue in cut[:MAX_ERRORS_KEPT]:
        size = json_chars(errors_to_json([issue])) - 1  # its share of the list: the object and a comma
        if used + size > room:
            break
        kept.append(issue)
        used += size
    if len(kept) < len(cut):
        kept.append(FieldIssue("", _more(len(cut) - len(kept), len(cut))))
    return kept


def _more(left: int, total: int) -> str:
    return f"{left} more problem(s) not shown ({total} in all): fix these and submit again to see the rest"


@dataclass(frozen=True)
class Approval:
    """A person's decision on a model that waits for approval (shared/services/approval.py)."""

    decision: Decision
    by: str
    at: datetime
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "by": self.by, "at": self.at.isoformat(), "reason": self.reason}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Approval:
        decision = data["decision"]
        if decision not in DECISIONS:
            raise ValueError(f"approval decision {decision!r} is none of {', '.join(DECISIONS)}")
        return cls(decision, str(data["by"]), datetime.fromisoformat(data["at"]), str(data.get("reason") or ""))


@dataclass(frozen=True)
class SmokeTest:
    """The request sent to a new deployment before it serves (the scoring payload of shared/scoring.py), and
    what it answered."""

    request: dict[str, Any]
    answer: str | None = None
    at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return _compact({"request": self.request, "answer": self.answer, "at": iso(self.at)})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SmokeTest:
        return cls(dict(data.get("request") or {}), data.get("answer"), stamp(data.get("at")))


@dataclass(frozen=True)
class Health:
    """The endpoint's failed health probes in a row (shared/services/health.py); the first healthy one resets."""

    unhealthy_probes: int = 0
    unhealthy_since: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return _compact(
            {"unhealthy_probes": self.unhealthy_probes or None, "unhealthy_since": iso(self.unhealthy_since)}
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Health:
        return cls(int(data.get("unhealthy_probes") or 0), stamp(data.get("unhealthy_since")))


@dataclass(frozen=True)
class Observed:
    """Scoring requests one deployment answered in a canary's window, and how many were server errors."""

    requests: int
    errors: int
    error_rate: float
    known: bool

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "error_rate": self.error_rate, "known": self.known}

    @classmethod
    def from_json(cls, data: Any) -> Observed | None:
        if not isinstance(data, dict):
            return None
        return cls(int(data["requests"]), int(data["errors"]), float(data["error_rate"]), bool(data["known"]))


@dataclass(frozen=True)
class Actor:
    """Who did something to a run by hand, and when."""

    by: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "at": self.at.isoformat()}


@dataclass(frozen=True)
class Canary:
    """This run's deployment joined an endpoint another run serves (shared/services/canary.py).

    ``phase`` moves only as ``shared.states.PHASE_TRANSITIONS`` allows, through ``moved``."""

    endpoint: str
    previous_deployment: str
    previous_run: str
    percent: int
    phase: RolloutPhase = RolloutPhase.DEPLOYING
    started_at: datetime | None = None
    observe_until: datetime | None = None
    canary_seen: Observed | None = None
    previous_seen: Observed | None = None
    promoted_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str | None = None
    rolled_back: Actor | None = None

    def traffic(self, new_deployment: str) -> dict[str, int]:
        """The split while it is observed: its share to the new deployment, the rest to the previous one."""
        return {self.previous_deployment: 100 - self.percent, new_deployment: self.percent}

    def moved(self, phase: RolloutPhase, **changes: Any) -> Canary:
        """The canary in ``phase`` with ``changes``; ``IllegalPhaseMove`` if its phase does not lead there."""
        check_phase_move(self.phase, phase)
        return replace(self, phase=phase, **changes)

    def to_json(self) -> dict[str, Any]:
        return _compact(
            {
                "role": ROLE_CANARY,
                "endpoint": self.endpoint,
                "previous_deployment": self.previous_deployment,
                "previous_run": self.previous_run,
                "percent": self.percent,
                "phase": self.phase.value,
                "started_at": iso(self.started_at),
                "observe_until": iso(self.observe_until),
                "canary": self.canary_seen.to_json() if self.canary_seen else None,
                "previous": self.previous_seen.to_json() if self.previous_seen else None,
                "promoted_at": iso(self.promoted_at),
                "ended_at": iso(self.ended_at),
                "reason": self.reason,
                "rolled_back": self.rolled_back.to_json() if self.rolled_back else None,
            }
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Canary:
        rolled = data.get("rolled_back")
        return cls(
            endpoint=str(data["endpoint"]),
            previous_deployment=str(data["previous_deployment"]),
            previous_run=str(data["previous_run"]),
            percent=int(data["percent"]),
            phase=RolloutPhase(data.get("phase") or RolloutPhase.DEPLOYING),
            started_at=stamp(data.get("started_at")),
            observe_until=stamp(data.get("observe_until")),
            canary_seen=Observed.from_json(data.get("canary")),
            previous_seen=Observed.from_json(data.get("previous")),
            promoted_at=stamp(data.get("promoted_at")),
            ended_at=stamp(data.get("ended_at")),
            reason=data.get("reason"),
            rolled_back=Actor(str(rolled["by"]), datetime.fromisoformat(rolled["at"])) if rolled else None,
        )


@dataclass(frozen=True)
class Rollout:
    """A deployment's life on a shared endpoint: the canary it was (if it joined another run's endpoint), the
    run that replaced it, and when it is retired (the cleanup's retire step deletes it then)."""

    canary: Canary | None = None
    replaced_by: str | None = None
    retire_after: datetime | None = None
    deployment_deleted_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        # One flat object, as the status blob has always shown it.
        return _compact(
            {
                **(self.canary.to_json() if self.canary else {}),
                "replaced_by": self.replaced_by,
                "retire_after": iso(self.retire_after),
                "deployment_deleted_at": iso(self.deployment_deleted_at),
            }
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rollout:
        return cls(
            canary=Canary.from_json(data) if data.get("role") == ROLE_CANARY else None,
            replaced_by=data.get("replaced_by"),
            retire_after=stamp(data.get("retire_after")),
            deployment_deleted_at=stamp(data.get("deployment_deleted_at")),
        )
