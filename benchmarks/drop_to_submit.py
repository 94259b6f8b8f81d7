"""Drop-to-submitted on the local host: how long from a config upload until its run is `submitted`.

    PYTHONPATH=. .venv/bin/python benchmarks/drop_to_submit.py [--drops 20] [--burst 10] [--gap-s 1.0]

Starts Azurite and the local host (as benchmarks/chaos.py does, without its event chaos) with the tiny model
and at most one training job at a time, then uploads ``--drops`` distinct configs one every ``--gap-s``
seconds, then ``--burst`` more at once. The time of each is the run's own ``submitted`` timestamp (written by
the host) minus the wall-clock time just before the upload, so the benchmark's watching costs nothing. Prints
p50/p95/max per phase, the host's blob poll interval (the floor's mean is half of it), and the goal
(p50 < 1 s, issue 12). The first drop after the host starts pays the import of the submit path; it is kept.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chaos import CONFIG, CONTAINER, Stack, ledger, log  # noqa: E402

from shared.naming import run_id  # noqa: E402

GOAL_P50_S = 1.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(q * len(ordered)) - 1)]


def drop_all(stack: Stack, names: list[str], gap_s: float, tag: str) -> dict[str, tuple[str, float]]:
    """Upload one config per name; returns name -> (run id, wall time just before the upload)."""
    from shared.storage import upload_config

    dropped: dict[str, tuple[str, float]] = {}
    for i, name in enumerate(names):
        content = CONFIG.format(steps=2, lr=f"{i + 1}e-5").replace("max_seq_length: 128", f"max_seq_length: {64 + i}")
        data = f"# {tag}\n{content}".encode()
        dropped[name] = (run_id(CONTAINER, name, data), time.time())
        upload_config(stack.env["AzureWebJobsStorage"], CONTAINER, name, data)
        if gap_s:
            time.sleep(gap_s)
    return dropped


def latencies(dropped: dict[str, tuple[str, float]], timeout_s: float) -> tuple[list[float], list[float], list[str]]:
    """(drop -> submitted, drop -> received: the poll found it and the handler began, runs not submitted)."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = ledger()
        times: list[float] = []
        pickups: list[float] = []
        missing: list[str] = []
        for name, (run, at) in dropped.items():
            record = records.get(run)
            timeline = record.timeline if record else {}
            if not timeline.get("submitted"):
                missing.append(f"{name}={record.state.value if record else 'absent'}")
                continue
            times.append(datetime.fromisoformat(timeline["submitted"]).timestamp() - at)
            pickups.append(datetime.fromisoformat(timeline["received"]).timestamp() - at)
        if not missing or time.monotonic() > deadline:
            return times, pickups, missing
        time.sleep(0.5)


def report(phase: str, times: list[float], pickups: list[float], missing: list[str]) -> None:
    if not times:
        print(f"{phase}: no run reached submitted; missing {missing}")
        return
    print(
        f"{phase}: {len(times)} drops, p50 {statistics.median(times):.2f}s, p95 {percentile(times, 0.95):.2f}s, "
        f"max {max(times):.2f}s, first {times[0]:.2f}s" + (f"; not submitted: {missing}" if missing else "")
    )
    print(f"  of which drop -> received (poll, listing, download): p50 {statistics.median(pickups):.2f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drops", type=int, default=20, help="configs uploaded one at a time")
    parser.add_argument("--burst", type=int, default=10, help="configs uploaded together afterwards")
    parser.add_argument("--gap-s", type=float, default=1.0, help="seconds between the spaced uploads")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (host.log shows each submit)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="autopilot-drop-"))
    stack = Stack(base, 11, chaos=False, extra_env={"AUTOPILOT_LOCAL_MAX_JOBS": "1"})
    stack.prepare()
    try:
        stack.start_azurite()
        stack.start_host()
        poll = stack.env.get("AUTOPILOT_BLOB_POLL_SECONDS") or "0.5 (default)"
        log(f"stack up; blob poll interval {poll} s")
        spaced = drop_all(stack, [f"drop/s{i:02d}.yaml" for i in range(args.drops)], args.gap_s, "spaced")
        spaced_times, spaced_pickups, spaced_missing = latencies(spaced, 60)
        burst = drop_all(stack, [f"drop/b{i:02d}.yaml" for i in range(args.burst)], 0, "burst")
        burst_times, burst_pickups, burst_missing = latencies(burst, 60)
    finally:
        stack.stop_all()
    print("\n== drop-to-submitted (local host, tiny model, 1 training job at a time) ==")
    report(f"one every {args.gap_s:g}s", spaced_times, spaced_pickups, spaced_missing)
    if args.burst:
        report(f"{args.burst} at once", burst_times, burst_pickups, burst_missing)
    if spaced_times:
        p50 = statistics.median(spaced_times)
        print(f"goal p50 < {GOAL_P50_S:.0f}s: {'met' if p50 < GOAL_P50_S else 'NOT met'} ({p50:.2f}s)")
    if args.keep:
        print(f"kept {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if spaced_times and not spaced_missing else 1


if __name__ == "__main__":
    raise SystemExit(main())
