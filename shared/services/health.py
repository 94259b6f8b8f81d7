"""Sustained-failure rule for unhealthy endpoints: cleanup deletes for idleness; an unhealthy endpoint is
only deleted once it has failed ``UNHEALTHY_PROBES`` cleanup probes in a row spanning ``UNHEALTHY_MINUTES``.

One failed probe says little: a server restarting after a crash or a host restart, a managed deployment
rolling its container, a stall of a few seconds. The platform restarts what it can (the local platform
restarts its server processes; Azure restarts a managed deployment's containers); meanwhile the failures are
counted on the run, durably (``attempts``: ``unhealthy_probes`` and ``unhealthy_since``, epoch seconds), so
a restarted Function App keeps counting, and the first healthy probe resets them. An endpoint with no ledger
row (an orphan: its run is unknown) is judged by idleness alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.ledger.record import RunRecord
from shared.runs import RunStore

UNHEALTHY_PROBES = 3
UNHEALTHY_MINUTES = 10
PROBES_KEY = "unhealthy_probes"
SINCE_KEY = "unhealthy_since"


@dataclass(frozen=True)
class HealthVerdict:
    delete: bool
    reason: str


def note_unhealthy(store: RunStore, record: RunRecord, now: datetime, *, dry_run: bool = False) -> HealthVerdict:
    """Count one failed probe on the run; the verdict says whether the failure is now sustained."""
    probes = record.attempts.get(PROBES_KEY, 0) + 1
    since_s = record.attempts.get(SINCE_KEY) or int(now.timestamp())
    if not dry_run:

        def count(r: RunRecord) -> None:
            r.attempts[PROBES_KEY] = probes
            r.attempts[SINCE_KEY] = since_s

        store.update(record.run_id, count)
    since = datetime.fromtimestamp(since_s, UTC)
    minutes = int((now - since).total_seconds() // 60)
    if probes >= UNHEALTHY_PROBES and now - since >= timedelta(minutes=UNHEALTHY_MINUTES):
        return HealthVerdict(True, f"unhealthy for {minutes} min ({probes} failed probes in a row)")
    return HealthVerdict(
        False,
        f"unhealthy (probe {probes} of {UNHEALTHY_PROBES}, for {minutes} of {UNHEALTHY_MINUTES} min); "
        "left to the platform to restart",
    )


def note_healthy(store: RunStore, record: RunRecord) -> None:
    """A healthy probe ends a run of failures."""
    if PROBES_KEY in record.attempts or SINCE_KEY in record.attempts:

        def reset(r: RunRecord) -> None:
            r.attempts.pop(PROBES_KEY, None)
            r.attempts.pop(SINCE_KEY, None)

        store.update(record.run_id, reset)
