"""The control plane at scale: reconcile sweep cost against finished runs, and many active runs.

On a real Azurite (started here on free ports, like the test session does) with a platform whose every call
takes a set latency (``--latency-ms``, 200 by default):
1. 50 active runs with 0, 1 000 and 10 000 finished runs beside them: the median sweep time and the table
   requests of one sweep; next to it, what the pre-index query (a filter on ``state``, which Azure Table
   answers by scanning the partition) costs on the same table.
2. 500 active runs: sweeps of the default budget until every run was handled; the wall time until then.
Goals (issue 13): the 10 000-finished sweep at most 1.2x the 0-finished one; table requests per sweep
independent of the finished runs; 500 active runs all handled within 60 s.

    PYTHONPATH=. .venv/bin/python benchmarks/control_plane_scale.py [--latency-ms 200] [--concurrency 8]

Needs Azurite (``npm install``); seeding 10 000 rows uses batch transactions (about a minute on a laptop).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local.common.processes import free_ports  # noqa: E402
from local.host.azurite import AzuritePorts, start_azurite, stop_azurite  # noqa: E402
from shared.ledger.record import RunRecord  # noqa: E402
from shared.ledger.table import PARTITION, TableLedger  # noqa: E402
from shared.platform.port import JobInfo, JobStatus, MLPlatform  # noqa: E402
from shared.runs import RunStore  # noqa: E402
from shared.services.reconcile import RECONCILED, reconcile, sweep_runs  # noqa: E402
from shared.services.sweep import SweepBudget  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.states import RunState  # noqa: E402
from shared.status import BlobStatusStore  # noqa: E402

ACTIVE = 50
FINISHED = (0, 1_000, 10_000)
MANY_ACTIVE = 500
REPEATS = 5


# What is measured is the runs step. The orphan step (shared/services/orphans.py) is bounded by caps of its own
# (MAX_LISTED things per kind, MAX_LOOKUPS ledger reads per sweep), whatever the number of finished runs.
RUNS_STEP = (sweep_runs,)


class LatencyPlatform:
    """Every job is running; each call takes ``latency`` seconds, as an Azure ML call would."""

    name = "latency"
    reports_eval_metrics = False

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls = 0

    def links(self, job_name: str | None, endpoint_name: str | None) -> dict[str, str]:
        return {}

    def get_job(self, name: str) -> JobInfo:
        time.sleep(self.latency)
        self.calls += 1
        return JobInfo(name=name, status=JobStatus.RUNNING)


def latency_platform(latency: float) -> MLPlatform:
    """A ``LatencyPlatform`` as the port: the runs sweep measured here calls only ``get_job``, so the rest of
    the port is left out on purpose (a sweep that called more would fail loudly, not measure the wrong thing)."""
    return cast(MLPlatform, LatencyPlatform(latency))


@dataclass
class Counter:
    """Counts the HTTP requests of the storage clients it is hooked into."""

    requests: int = 0

    def __call__(self, request: Any) -> None:
        self.requests += 1


def runs(count: int, state: RunState, prefix: str) -> list[RunRecord]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(count):
        at = start + timedelta(minutes=i)
        out.append(
            RunRecord(
                run_id=f"{prefix}{i:05d}-{i:08x}",
                state=state,
                config_blob=f"{prefix}{i:05d}.yaml",
                config_name=f"{prefix}{i:05d}",
                created_at=at,
                updated_at=at,
                job_name=f"{prefix}{i:05d}-{i:08x}",
                job_status=JobStatus.RUNNING.value if state == RunState.RUNNING else None,
                timeline={"received": at.isoformat()},
            )
        )
    return out


def seeded(conn: str, active: int, finished: int) -> tuple[RunStore, Counter, TableLedger]:
    counter = Counter()
    table = f"bench{uuid.uuid4().hex[:10]}"
    ledger = TableLedger(conn, table, raw_request_hook=counter)
    ledger.import_records(runs(finished, RunState.CANCELED, "done") + runs(active, RunState.RUNNING, "live"))
    store = RunStore(ledger, BlobStatusStore(conn, f"status{uuid.uuid4().hex[:10]}"))
    return store, counter, ledger


def legacy_scan(ledger: TableLedger, counter: Counter) -> tuple[float, int]:
    """The pre-index query of the active runs: a filter on a non-key property of the one partition."""
    before, started = counter.requests, time.perf_counter()
    query = " or ".join(f"state eq '{s.value}'" for s in sorted(RECONCILED))
    found = list(ledger.table.query_entities(f"PartitionKey eq '{PARTITION}' and ({query})"))
    assert len(found) == ACTIVE
    return time.perf_counter() - started, counter.requests - before


def sweep_costs(conn: str, latency: float, budget: SweepBudget) -> list[dict[str, Any]]:
    tables: list[tuple[int, RunStore, Counter, TableLedger, MLPlatform, list[float], list[int]]] = []
    for finished in FINISHED:
        seed_started = time.perf_counter()
        store, counter, ledger = seeded(conn, ACTIVE, finished)
        print(
            f"  seeded {finished} finished + {ACTIVE} active in {time.perf_counter() - seed_started:.1f} s", flush=True
        )
        tables.append((finished, store, counter, ledger, latency_platform(latency), [], []))
    for _finished, store, _counter, _ledger, platform, _times, _requests in tables:
        # Warm-up, after all the seeding: clients and their connections, the index marker.
        reconcile(store, platform, deploy_timeout=timedelta(hours=1), budget=budget, sweeps=RUNS_STEP)
    # Round-robin, so a noisy moment of the machine falls on every size alike.
    for _ in range(REPEATS):
        for _finished, store, counter, _ledger, platform, times, requests in tables:
            before, started = counter.requests, time.perf_counter()
            report = reconcile(store, platform, deploy_timeout=timedelta(hours=1), budget=budget, sweeps=RUNS_STEP)
            times.append(time.perf_counter() - started)
            requests.append(counter.requests - before)
            handled = [o for o in report.outcomes if o.error is None]
            assert len(handled) == ACTIVE and not report.left, [o.error for o in report.outcomes if o.error]
    rows = []
    for finished, _store, counter, ledger, _platform, times, requests in tables:
        scan_s, scan_requests = legacy_scan(ledger, counter)
        rows.append(
            {
                "finished": finished,
                "sweep_s": statistics.median(times),
                "requests": statistics.median(requests),
                "scan_s": scan_s,
                "scan_requests": scan_requests,
            }
        )
        print(
            f"  {finished:>6} finished + {ACTIVE} active: sweep {rows[-1]['sweep_s']:.2f} s "
            f"(min {min(times):.2f}), {rows[-1]['requests']:.0f} table requests | "
            f"the pre-index query of the active runs alone: {scan_s:.3f} s, {scan_requests} request(s)",
            flush=True,
        )
    return rows


def many_active(conn: str, latency: float, budget: SweepBudget) -> tuple[float, int, int]:
    store, _, _ = seeded(conn, MANY_ACTIVE, 0)
    platform = latency_platform(latency)
    handled: set[str] = set()
    sweeps = 0
    started = time.perf_counter()
    while len(handled) < MANY_ACTIVE and sweeps < 20:
        report = reconcile(store, platform, deploy_timeout=timedelta(hours=1), budget=budget, sweeps=RUNS_STEP)
        handled |= {o.run_id for o in report.outcomes if o.error is None}
        sweeps += 1
    return time.perf_counter() - started, sweeps, len(handled)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency-ms", type=float, default=200.0)
    defaults = Settings.from_env({})
    parser.add_argument("--concurrency", type=int, default=defaults.sweep_concurrency)
    parser.add_argument("--budget-s", type=float, default=defaults.sweep_budget_seconds)
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    budget = SweepBudget(seconds=args.budget_s, concurrency=args.concurrency)

    workdir = Path(tempfile.mkdtemp(prefix="bench-azurite-"))
    started = start_azurite(workdir, AzuritePorts(*free_ports(3)), project_root=ROOT, timeout_s=60)
    try:
        conn = started.connection_string
        print(
            f"reconcile sweep, {args.latency_ms:.0f} ms per platform call, concurrency {budget.concurrency}, "
            f"budget {budget.seconds:.0f} s, Azurite; median of {REPEATS} sweeps, interleaved",
            flush=True,
        )
        rows = sweep_costs(conn, latency, budget)
        base, big = rows[0], rows[-1]
        ratio = big["sweep_s"] / base["sweep_s"]
        same_requests = len({r["requests"] for r in rows}) == 1
        print(f"  10000-finished / 0-finished sweep time: {ratio:.2f}x (goal <= 1.2x)")
        print(
            f"  table requests per sweep: {', '.join(str(int(r['requests'])) for r in rows)} "
            f"({'independent of' if same_requests else 'DEPEND ON'} finished runs)"
        )
        wall, sweeps, handled = many_active(conn, latency, budget)
        print(
            f"{MANY_ACTIVE} active runs: {handled} handled in {wall:.1f} s over {sweeps} sweep(s) "
            "(goal: all within 60 s)"
        )
        ok = ratio <= 1.2 and same_requests and handled == MANY_ACTIVE and wall <= 60
        print("goals met" if ok else "GOALS NOT MET")
        return 0 if ok else 1
    finally:
        stop_azurite(workdir)


if __name__ == "__main__":
    raise SystemExit(main())
