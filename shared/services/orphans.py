"""The orphan sweep: jobs, model versions and endpoints carrying the app's tags whose run has no ledger row, and
jobs still running for a run that was canceled.

Such a thing is what a lost write leaves (Azurite killed hard lost a run's ledger row while its job went on),
or what a deleted table leaves. Nothing else looks at it, so this reconcile step finds it, records it and,
where it is safe, removes it, so nothing the app made runs unseen.

Found: the platform's app-tagged endpoints, jobs and model versions (``list_endpoints``, ``list_jobs``,
``list_models``; each capped at ``MAX_LISTED``), and for each distinct run id one ledger read, at most
``MAX_LOOKUPS`` per sweep: endpoints' and unfinished jobs' runs first, the rest in an order that changes
every sweep (the others come up in the next ones). A run id the ledger read failed for is
"unknown", never "missing": it is neither recorded as an orphan nor acted on.

Recorded: one JSON document in the status container, ``ORPHANS_BLOB``, rewritten by every sweep with what
is orphaned now (kind, name, run id, state, created, first seen, what was done). The status container is
where people already look for what the app did, ``autopilot status`` shows it, and it needs no new table
or role. The first-seen time survives across sweeps (the grace below counts from it); a kind whose listing
failed keeps its previous entries (no answer is no evidence).

Removed, the policy:
- an endpoint: deleted on the cleanup's own evidence, ``cleanup.decide`` with no run (known activity, no
  request in its idle window, older than the window); no metric data keeps it. ``autopilot_keep`` keeps it;
- a job still queued or running: canceled once it has been an orphan for ``grace`` (default 60 minutes,
  ``AUTOPILOT_ORPHAN_GRACE_MINUTES``): long past the moment a run's row and its job are created, so a sweep
  reading between the two (or a ledger replica behind) never cancels a live run's job. A finished job is
  only recorded: it costs nothing and its logs are the evidence;
- a model version: only recorded, never deleted. It is the paid-for result of a training, the port has no
  delete for it, and a person decides (a new config, or the workspace's own tools).
- a job still queued or running whose run is ``canceled``: canceled at once, no grace (the ledger's own word
  is the evidence). A cancel that raced the submit leaves one when the submit died between creating the job and
  its ledger write (``cancel.py``). It is recorded like an orphan, with what was done.
An orphan that is gone from the platform, or whose run reappears, leaves the document at the next sweep.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared.naming import TAG_KEEP, TAG_RUN_ID
from shared.platform.port import EndpointInfo, JobInfo, MLPlatform, ModelRef
from shared.services.cleanup import decide
from shared.services.sweep import SweepContext
from shared.states import RunState

log = logging.getLogger(__name__)

ORPHANS_BLOB = "_autopilot/orphans.json"
DEFAULT_ORPHAN_GRACE = timedelta(minutes=60)
MAX_LISTED = 500  # per kind and sweep: the listing calls' cost stays bounded however many runs there were
MAX_LOOKUPS = 200  # ledger reads per sweep; run ids past it are looked at next time
KINDS = ("endpoint", "job", "model")


@dataclass(frozen=True)
class Orphan:
    kind: str  # endpoint | job | model
    name: str  # the endpoint, the job, or ``model:version``
    run_id: str
    state: str  # the job's status, the endpoint's provisioning state, "registered"
    created_at: str | None
    first_seen: str
    last_seen: str
    action: str  # what the sweep did or why it did nothing

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.name


class ReconcileReport(Protocol):
    orphans: list[Orphan]


def read_orphans(status: Any) -> list[Orphan]:
    """The recorded orphans (``status`` is a ``StatusStore``); an unreadable entry is skipped."""
    document = status.read(ORPHANS_BLOB) or {}
    found = []
    for raw in document.get("orphans") or []:
        try:
            found.append(Orphan(**{f: raw.get(f) for f in Orphan.__dataclass_fields__}))
        except TypeError:
            continue
    return found


def _seen(platform: MLPlatform) -> tuple[dict[str, list[tuple[str, str, str, str | None, Any]]], set[str]]:
    """Per kind: (name, run id, state, created, the item); and the kinds whose listing failed."""
    listers: dict[str, Callable[[], Iterable[Any]]] = {
        "endpoint": platform.list_endpoints,
        "job": lambda: platform.list_jobs(limit=MAX_LISTED),
        "model": lambda: platform.list_models(limit=MAX_LISTED),
    }
    seen: dict[str, list[tuple[str, str, str, str | None, Any]]] = {kind: [] for kind in KINDS}
    failed: set[str] = set()
    for kind, lister in listers.items():
        try:
            items = list(lister())[:MAX_LISTED]
        except Exception as exc:  # this kind is looked at next time; its recorded orphans stay
            log.warning("orphan sweep: listing %ss failed: %s", kind, exc)
            failed.add(kind)
            continue
        for item in items:
            run = item.tags.get(TAG_RUN_ID)
            if not run:
                continue
            if isinstance(item, EndpointInfo):
                created = item.created_at.isoformat() if item.created_at else None
                seen[kind].append((item.name, run, str(item.state or "-"), created, item))
            elif isinstance(item, JobInfo):
                seen[kind].append((item.name, run, item.status.value, None, item))
            elif isinstance(item, ModelRef):
                seen[kind].append((f"{item.name}:{item.version}", run, "registered", None, item))
    return seen, failed


def _lookup_order(seen: dict[str, list[tuple[str, str, str, str | None, Any]]], now: datetime) -> list[str]:
    """Run ids to read, the ones whose things cost or run first (endpoints, jobs not ended), then the rest in an
    order that changes every sweep, so past ``MAX_LOOKUPS`` every run id still comes up in a few sweeps."""
    urgent = {run for _, run, *_ in seen["endpoint"]}
    urgent |= {run for _, run, _, _, job in seen["job"] if not job.status.is_terminal}
    rest = sorted({run for items in seen.values() for _, run, *_ in items} - urgent)
    random.Random(now.isoformat()).shuffle(rest)
    return sorted(urgent) + rest


@dataclass(frozen=True)
class Lookups:
    """What the ledger said of the run ids seen on the platform this sweep."""

    missing: set[str]  # no ledger row
    canceled: set[str]  # the run is canceled
    unknown: set[str]  # not settled this sweep: the read failed or was past the lookup cap


def _look_up(ctx: SweepContext, run_ids: list[str]) -> Lookups:
    found = Lookups(set(), set(), set())
    for i, run in enumerate(run_ids):
        if i >= MAX_LOOKUPS or ctx.deadline.expired:
            found.unknown.add(run)
            continue
        try:
            record = ctx.store.get(run)
        except Exception as exc:  # no answer is not "missing": never act on it
            log.warning("orphan sweep: run %s not read: %s", run, exc)
            found.unknown.add(run)
            continue
        if record is None:
            found.missing.add(run)
        elif record.state == RunState.CANCELED:
            found.canceled.add(run)
    return found


def _stop_job_of_canceled_run(ctx: SweepContext, orphan: Orphan) -> str:
    ctx.platform.cancel_job(orphan.name)
    log.warning("job %s: still %s although run %s is canceled; canceled", orphan.name, orphan.state, orphan.run_id)
    return f"canceled: run {orphan.run_id} is canceled"


def _act(ctx: SweepContext, orphan: Orphan, item: Any, grace: timedelta) -> str:
    """Remove what the policy allows (module docstring); returns what was done, for the record."""
    if orphan.kind == "model":
        return "kept: model versions are never deleted by the app"
    if orphan.kind == "endpoint":
        if item.tags.get(TAG_KEEP) == "true":
            return "kept: autopilot_keep is set"
        decision = decide(ctx.store, ctx.platform, item, ctx.now)
        if decision.action != "delete":
            return f"kept: {decision.reason}"
        ctx.platform.begin_delete_endpoint(orphan.name)
        log.warning("orphan endpoint %s (run %s): deleted (%s)", orphan.name, orphan.run_id, decision.reason)
        return f"deleted: {decision.reason}"
    status: JobInfo = item
    if status.status.is_terminal:
        return f"kept: the job ended {status.status.value}; nothing runs"
    waited = ctx.now - datetime.fromisoformat(orphan.first_seen)
    if waited < grace:
        left = int((grace - waited).total_seconds() // 60)
        return f"kept: canceled if still orphaned in {left} min"
    ctx.platform.cancel_job(orphan.name)
    log.warning("orphan job %s (run %s): canceled after %s", orphan.name, orphan.run_id, waited)
    return f"canceled: orphaned for {int(waited.total_seconds() // 60)} min"


def sweep_orphans(ctx: SweepContext, report: ReconcileReport) -> None:
    """The orphan step of reconcile (see the module docstring)."""
    previous = {o.key: o for o in read_orphans(ctx.store.status)}
    seen, failed = _seen(ctx.platform)
    looked = _look_up(ctx, _lookup_order(seen, ctx.now))
    now = ctx.now.isoformat()
    current: list[Orphan] = [o for o in previous.values() if o.kind in failed]
    for kind, items in seen.items():
        for name, run, state, created, item in items:
            before = previous.get((kind, name))
            if run in looked.unknown:
                if before is not None:
                    current.append(before)  # not settled this time: keep what was known
                continue
            stray_job = kind == "job" and run in looked.canceled and not item.status.is_terminal
            if run not in looked.missing and not stray_job:
                continue
            orphan = Orphan(kind, name, run, state, created, before.first_seen if before else now, now, "")
            try:
                action = (
                    _stop_job_of_canceled_run(ctx, orphan) if stray_job else _act(ctx, orphan, item, ctx.orphan_grace)
                )
            except Exception as exc:  # one orphan's trouble must not stop the others
                action = f"error: {type(exc).__name__}: {exc}"[:300]
                log.warning("orphan %s %s: %s", kind, name, action)
            current.append(replace(orphan, action=action))
            if before is None or not action.startswith("kept"):  # new, or acted on: worth a log line
                report.orphans.append(replace(orphan, action=action))
    if not current and not previous and not failed:
        return  # nothing to record, nothing recorded before: no write
    ctx.store.status.write(
        ORPHANS_BLOB,
        {
            "swept_at": now,
            "policy": "endpoints deleted when idle as cleanup judges it; queued or running jobs canceled after "
            f"{int(ctx.orphan_grace.total_seconds() // 60)} min; model versions never deleted",
            "not_listed": sorted(failed),
            "orphans": [asdict(o) for o in sorted(current, key=lambda o: (o.kind, o.name))],
        },
    )
