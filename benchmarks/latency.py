"""How long the app adds after the platform has the answer: follow-ups on, and off (the timers alone).

Three waits, each measured over ``--runs`` runs with the production timer schedules (the settings' defaults:
reconcile ``0 */5 * * * *``, cleanup ``0 */15 * * * *``), p50 and p95:
- deployment ready -> ``deployed``: from the moment the platform's deployment reports Succeeded to the run's
  ``deployed`` time (traffic set, smoke test answered);
- canary window end -> promotion: from ``observe_until`` to the canary run's ``deployed`` time;
- idle deadline -> deletion: from the endpoint's idle deadline (deployed + ``cleanup.idle_after_minutes``,
  no request since) to the run's ``deleted`` time (the endpoint's delete call).

What runs: the app's real services (submit, reconcile, cleanup, the follow-up check and its scheduler) on the
in-memory ledger and the stateful fake platform of tests/fakes.py, under a fake clock; time jumps from one
thing due to the next (a timer tick on its NCRONTAB schedule, a follow-up message becoming visible, the
platform finishing a deployment). Each run starts at a random phase of the timers (uniform over their 15-minute
common period), and a deployment provisions for a random 3 to 12 minutes, so the timers' waits are sampled as a
user meets them. A follow-up message is handled its visibility delay plus a delivery lag after it was sent:
the lag is drawn from what part 1 measures on the real local stack (Azurite and the local host's queue
poller), so the model's delivery is the real one's.

1. Queue delivery lag (real): ``--lag-samples`` follow-ups sent by ``QueueFollowUps`` to a queue on Azurite
   (started here on free ports) with a 2 s visibility delay, handled by the local host's ``QueuePoller``
   polling as the local host does; the lag is handled time minus (sent time + 2 s).
2. The three waits, with follow-ups on and off.

    PYTHONPATH=. .venv/bin/python benchmarks/latency.py [--runs 40] [--lag-samples 20] [--seed 7] [--no-azurite]

Not measured: the platform's own time (provisioning, Azure Monitor's metrics delay: on Azure an idle check
waits ``activity_delay``, 3 minutes, past the deadline, which the local platform and this benchmark do not).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from local.host.ncrontab import parse  # noqa: E402
from shared.followups import FollowUp, FollowUpKind  # noqa: E402
from shared.runs import RunStore  # noqa: E402
from shared.services.cleanup import cleanup  # noqa: E402
from shared.services.followup import FollowUpScheduler, follow_up  # noqa: E402
from shared.services.reconcile import reconcile  # noqa: E402
from shared.services.submit import submit_config  # noqa: E402
from shared.settings import DEFAULTS  # noqa: E402
from shared.states import RunState  # noqa: E402
from tests.configs import CONFIG  # noqa: E402
from tests.fakes import FakeClock, FakePlatform, InMemoryFollowUps, make_store  # noqa: E402

TIMEOUT = timedelta(minutes=60)
IDLE_MINUTES = 30
OBSERVE_MINUTES = 10
HORIZON = timedelta(hours=3)
ENDPOINT = "ft-latency-line"
GOALS = {"deploy": 30.0, "canary": 60.0, "idle": 120.0}  # p50 goals in seconds (issue 21); deploy p95 <= 90
DEFAULT_LAG_S = (0.0, 2.0)  # without Azurite: uniform over host.json's maxPollingInterval


# ------------------------------------------------------------------------------------ 1. the real queue


def measure_lag(samples: int) -> list[float]:
    """Seconds from a follow-up's due time to its handling, through Azurite and the local host's poller."""
    import azure.functions as func

    from local.common.processes import free_ports
    from local.host.azurite import AzuritePorts, start_azurite, stop_azurite
    from local.host.discovery import discover
    from local.host.host import QUEUE_POLL_SECONDS
    from local.host.queuepoller import QueuePoller
    from shared.followups_queue import QueueFollowUps

    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-azurite-"))
    started = start_azurite(workdir, AzuritePorts(*free_ports(3)), project_root=ROOT, timeout_s=60)
    try:
        conn = started.connection_string
        queue = f"latency-{uuid.uuid4().hex[:10]}"
        handled: dict[int, float] = {}
        app = func.FunctionApp()

        @app.function_name("followup")
        @app.queue_trigger(arg_name="message", queue_name=queue, connection="AzureWebJobsStorage")
        def on_message(message: func.QueueMessage) -> None:
            handled[FollowUp.from_json(message.get_body().decode()).attempt] = time.time()

        follow_ups = QueueFollowUps(conn, queue, "latencymarks")
        follow_ups.queue  # noqa: B018 - create the queue before the clock starts
        poller = QueuePoller(discover(app).queue, lambda _: conn, {})
        stop = threading.Event()
        thread = threading.Thread(target=poller.run, args=(stop, QUEUE_POLL_SECONDS), daemon=True)
        thread.start()
        due: dict[int, float] = {}
        delay = 2.0
        for n in range(samples):
            sent = time.time()
            follow_ups.schedule(FollowUp("latency-run", FollowUpKind.RUN, "deploying@x", n), timedelta(seconds=delay))
            due[n] = sent + delay
            time.sleep(random.uniform(0.2, 0.7))  # spread the sends over the poller's phase
        deadline = time.time() + 30
        while len(handled) < samples and time.time() < deadline:
            time.sleep(0.1)
        stop.set()
        thread.join(5)
        return [handled[n] - due[n] for n in sorted(handled)]
    finally:
        stop_azurite(workdir)


# ------------------------------------------------------------------------------------ 2. the waits


def config(name: str, **deployment: Any) -> bytes:
    data = {
        **CONFIG,
        "deployment": {**CONFIG["deployment"], **deployment},  # type: ignore[dict-item]
        "cleanup": {"idle_after_minutes": IDLE_MINUTES},
    }
    return yaml.safe_dump(data).encode()


class Sim:
    """One run's world: the services, the fake platform, the timers on their schedules, the follow-up queue."""

    def __init__(self, follow_ups_on: bool, start: datetime, lag: Callable[[], float]) -> None:
        self.clock = FakeClock(start)
        self.follow_ups = InMemoryFollowUps(self.clock)
        observers = [FollowUpScheduler(self.follow_ups, lambda: timedelta(0))] if follow_ups_on else []
        self.store: RunStore = make_store(self.clock, observers)[0]
        self.platform = FakePlatform(self.clock)
        self.reconcile_cron = parse(DEFAULTS["AUTOPILOT_RECONCILE_SCHEDULE"])
        self.cleanup_cron = parse(DEFAULTS["AUTOPILOT_CLEANUP_SCHEDULE"])
        self.next_reconcile = self.reconcile_cron.next_after(start)
        self.next_cleanup = self.cleanup_cron.next_after(start)
        self.lag = lag
        self.ready_at: datetime | None = None  # when the platform finishes the deployments being created
        self.messages = 0

    def drop(self, content: bytes, name: str) -> str:
        record = submit_config(
            container="training-configs",
            blob_name=name,
            content=content,
            etag='"0x1"',
            store=self.store,
            platform=self.platform,
            data_root=Path("."),
        )
        assert record is not None and record.state == RunState.SUBMITTED, record
        return record.run_id

    def tick_now(self) -> None:
        """A reconcile look at the current time (setup: the way the run got where the measurement starts)."""
        reconcile(self.store, self.platform, deploy_timeout=TIMEOUT)

    def state(self, run: str) -> RunState:
        record = self.store.get(run)
        assert record is not None
        return record.state

    def at(self, run: str, state: RunState) -> datetime:
        record = self.store.get(run)
        assert record is not None
        return datetime.fromisoformat(record.timeline[state.value])

    def until(self, done: Callable[[], bool]) -> None:
        """Jump from one thing due to the next until ``done()``."""
        end = self.clock() + HORIZON
        while not done():
            follow_up_due = self.follow_ups.next_due()
            follow_up_at = follow_up_due + timedelta(seconds=self.lag()) if follow_up_due is not None else None
            candidates = [t for t in (self.next_reconcile, self.next_cleanup, self.ready_at, follow_up_at) if t]
            now = max(min(candidates), self.clock())
            if now > end:
                raise RuntimeError("not done within the horizon")
            self.clock.now = now
            if self.ready_at is not None and now >= self.ready_at:
                self.platform.complete_deployments()
                self.ready_at = None
            if follow_up_at is not None and now >= follow_up_at:
                for message in self.follow_ups.deliver_due():
                    self.messages += 1
                    follow_up(self.store, self.platform, self.follow_ups, message, deploy_timeout=TIMEOUT)
            if now >= self.next_reconcile:
                reconcile(self.store, self.platform, deploy_timeout=TIMEOUT)
                self.next_reconcile = self.reconcile_cron.next_after(now)
            if now >= self.next_cleanup:
                cleanup(self.store, self.platform)
                self.next_cleanup = self.cleanup_cron.next_after(now)


def deploy_wait(sim: Sim, rng: random.Random) -> float:
    run = sim.drop(config("deploy"), "latency.yaml")
    sim.platform.finish_job(run)
    sim.tick_now()  # the job's end seen: registered and deploying
    assert sim.state(run) == RunState.DEPLOYING
    ready = sim.clock() + timedelta(minutes=rng.uniform(3, 12))
    sim.ready_at = ready
    sim.until(lambda: sim.state(run) != RunState.DEPLOYING)
    assert sim.state(run) == RunState.DEPLOYED, sim.state(run)
    return (sim.at(run, RunState.DEPLOYED) - ready).total_seconds()


def canary_wait(sim: Sim, rng: random.Random) -> float:
    line = {"endpoint_name": ENDPOINT, "canary_percent": 20, "observe_minutes": OBSERVE_MINUTES}
    first = sim.drop(config("v1", **line), "line-v1.yaml")
    sim.platform.finish_job(first)
    sim.tick_now()
    sim.platform.complete_deployments()
    sim.tick_now()
    assert sim.state(first) == RunState.DEPLOYED
    sim.clock.advance(minutes=rng.uniform(0, 15))  # the second run comes later, at any phase
    second = sim.drop(config("v2", **line), "line-v2.yaml")
    sim.platform.finish_job(second)
    sim.tick_now()
    sim.platform.complete_deployments()
    sim.tick_now()  # deployment succeeded, smoke test passed: the window opens now
    record = sim.store.get(second)
    assert record is not None and record.state == RunState.CANARY and record.canary and record.canary.observe_until
    window_end = record.canary.observe_until
    sim.until(lambda: sim.state(second) != RunState.CANARY)
    assert sim.state(second) == RunState.DEPLOYED, sim.state(second)
    return (sim.at(second, RunState.DEPLOYED) - window_end).total_seconds()


def idle_wait(sim: Sim, rng: random.Random) -> float:
    run = sim.drop(config("idle"), "idle.yaml")
    sim.platform.finish_job(run)
    sim.tick_now()
    sim.platform.complete_deployments()
    sim.tick_now()
    assert sim.state(run) == RunState.DEPLOYED
    deadline = sim.at(run, RunState.DEPLOYED) + timedelta(minutes=IDLE_MINUTES)
    sim.until(lambda: sim.state(run) == RunState.DELETED)
    return (sim.at(run, RunState.DELETED) - deadline).total_seconds()


SCENARIOS: dict[str, tuple[str, Callable[[Sim, random.Random], float]]] = {
    "deploy": ("deployment ready -> deployed", deploy_wait),
    "canary": ("canary window end -> promotion", canary_wait),
    "idle": ("idle deadline -> deletion", idle_wait),
}


def percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return statistics.median(values), cuts[18]


def fmt(seconds: float) -> str:
    return f"{seconds:6.1f} s" if seconds < 120 else f"{seconds / 60:6.1f} min"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--lag-samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-azurite", action="store_true", help="model the delivery lag instead of measuring it")
    args = parser.parse_args()
    lags: list[float] = []
    if not args.no_azurite:
        lags = measure_lag(args.lag_samples)
        p50, p95 = percentiles(lags)
        print(f"1. queue delivery lag, Azurite + the local host's queue poller, {len(lags)} follow-ups sent 2 s ahead:")
        print(f"   p50 {p50:.2f} s, p95 {p95:.2f} s, max {max(lags):.2f} s\n")
    rng_lag = random.Random(args.seed + 1)

    def lag() -> float:
        return rng_lag.choice(lags) if lags else rng_lag.uniform(*DEFAULT_LAG_S)

    print(
        f"2. waits the app adds, {args.runs} runs each, timers {DEFAULTS['AUTOPILOT_RECONCILE_SCHEDULE']!r} "
        f"(reconcile) and {DEFAULTS['AUTOPILOT_CLEANUP_SCHEDULE']!r} (cleanup), random phase; "
        f"delivery lag {'as measured in 1' if lags else 'uniform 0-2 s'}"
    )
    header = f"{'wait':34} {'follow-ups on p50':>18} {'p95':>10} {'msgs/run':>9} {'off (timers) p50':>17} {'p95':>10}"
    print(header)
    print("-" * len(header))
    ok = True
    base = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    for key, (label, scenario) in SCENARIOS.items():
        row: dict[bool, tuple[float, float, float]] = {}
        for on in (True, False):
            rng = random.Random(f"{args.seed}-{key}")  # the same phases and provisioning times in both modes
            waits, messages = [], 0
            for _ in range(args.runs):
                sim = Sim(on, base + timedelta(seconds=rng.uniform(0, 15 * 60)), lag)
                waits.append(scenario(sim, rng))
                messages += sim.messages
            p50, p95 = percentiles(waits)
            row[on] = (p50, p95, messages / args.runs)
        (on50, on95, msgs), (off50, off95, _) = row[True], row[False]
        print(f"{label:34} {fmt(on50):>18} {fmt(on95):>10} {msgs:9.1f} {fmt(off50):>17} {fmt(off95):>10}")
        ok = ok and on50 <= GOALS[key] and (key != "deploy" or on95 <= 90)
    print(
        "\ngoals (issue 21): deploy p50 <= 30 s and p95 <= 90 s; canary <= 60 s; idle <= 2 min plus the metrics' "
        f"own delay (Azure: +3 min activity_delay, not in these numbers): {'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
