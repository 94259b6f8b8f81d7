"""Sustained-failure rule for unhealthy endpoints: cleanup deletes for idleness; an unhealthy endpoint is
only deleted once it has failed ``UNHEALTHY_PROBES`` cleanup probes in a row spanning ``UNHEALTHY_MINUTES``.

One failed probe says little: a server restarting after a crash or a host restart, a managed deployment
rolling its container, a stall of a few seconds. The platform restarts what it can (the local platform
restarts its server processes; Azure restarts a managed deployment's containers); meanwhile the failures are
counted on the run, durably (its ``health``: failed probes in a row and since when), so a restarted
Function App keeps counting, and the first healthy probe resets them. An endpoint with no ledger
row (an orphan: its run is unknown) is judged by idleness alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.ledger.parts import Health
from shared.ledger.record import RunRecord
from shared.services.sweep import SweepRuns

UNHEALTHY_PROBES = 3
UNHEALTHY_MINUTES = 10


@dataclass(frozen=True)
class HealthVerdict:
    delete: bool
    reason: str


def note_unhealthy(runs: SweepRuns, record: RunRecord, now: datetime, *, dry_run: bool = False) -> HealthVerdict:
    """Count one failed probe on the run; the verdict says whether the failure is now sustained."""
    health = Health(record.health.unhealthy_probes + 1, record.health.unhealthy_since or now)
    if not dry_run:

        def count(r: RunRecord) -> None:
            r.health = health

        runs.update(record, count)
    probes, since = health.unhealthy_probes, health.unhealthy_since or now
    minutes = int((now - since).total_seconds() // 60)
    if probes >= UNHEALTHY_PROBES and now - since >= timedelta(minutes=UNHEALTHY_MINUTES):
        return HealthVerdict(True, f"unhealthy for {minutes} min ({probes} failed probes in a row)")
    return HealthVerdict(
        False,
        f"unhealthy (probe {probes} of {UNHEALTHY_PROBES}, for {minutes} of {UNHEALTHY_MINUTES} min); "
        "left to the platform to restart",
    )


def note_healthy(runs: SweepRuns, record: RunRecord) -> None:
    """A healthy probe ends a run of failures."""
    if record.health != Health():

        def reset(r: RunRecord) -> None:
            r.health = Health()

        runs.update(record, reset)
