"""Chaos run on the local stack: nothing stuck, nothing lost, nothing unseen. Loopback only, bounded.

    PYTHONPATH=. .venv/bin/python benchmarks/chaos.py [--configs 4] [--seed 7] [--budget-s 720]

Starts Azurite and the local host (its own process, reconcile every 5 s, cleanup every 10 s) on free loopback
ports in a temp directory, with the tiny model. Event Grid events the local platform posts go through a proxy
that drops, duplicates and delays (reorders) them at random (seeded). N configs are dropped, each three times.
At seeded points it kills: a training job (SIGKILL), the host (graceful, then hard), Azurite (graceful, then
hard), a deployed endpoint's server (SIGKILL), and finally restarts everything as `down` + `up` would. Then it
waits for every run to reach a terminal or steady state (deployed) and prints, per config: runs, jobs, model
versions, endpoints; runs not settled, and why each run that did not deploy ended where it did; orphans
(app-tagged things with no ledger row) and how many of them reconcile's orphan sweep did not record; and
drop-to-submitted p50/p95 (the run's own `submitted` timestamp minus the first upload).
Needs Azurite (`npm install`), requirements-local.txt and, for the webhook receivers' stock signature check,
`standardwebhooks` (requirements-dev.txt); nothing else. The lifecycle (approvals, a shared endpoint with a canary
and a rollback, a cancel, webhook receivers that fail or hang for a while) is in benchmarks/chaos_lifecycle.py.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import chaos_lifecycle as lifecycle  # noqa: E402  (beside this script)
import httpx  # noqa: E402

from local.common import processes  # noqa: E402
from local.host.azurite import AzuritePorts, pid_path, start_azurite, stop_azurite  # noqa: E402
from shared.naming import TAG_CONFIG, TAG_RUN_ID, run_id  # noqa: E402
from shared.states import TERMINAL, RunState  # noqa: E402

SAMPLE = ROOT / "samples" / "ultrachat_sample"
MODELS_CACHE = ROOT / ".test-work" / "models"
CONTAINER = "training-configs"
CONFIG = """\
model: {{name: tiny-random-chat}}
data: {{train: small/train_sft.jsonl, test: small/test_sft.jsonl}}
compute: {{cluster: local-cpu}}
training: {{max_steps: {steps}, max_seq_length: 128, logging_steps: 1, learning_rate: {lr}}}
optimization: {{lora: {{enabled: true, r: 4, alpha: 8}}}}
deployment:
  instance_type: local-cpu
  smoke_test: {{sample_file: small/test_gen.jsonl, parameters: {{max_new_tokens: 4}}}}
{extra}cleanup: {{idle_after_minutes: 600}}
"""
STEADY = TERMINAL | {RunState.DEPLOYED}
ORPHAN_KIND = {"jobs": "job", "model versions": "model", "endpoints": "endpoint"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class EventChaosProxy:
    """Forwards the platform's Event Grid posts to the host, dropping, duplicating or delaying some."""

    def __init__(self, target: str, rng: random.Random, p_drop: float, p_dup: float, p_delay: float) -> None:
        self.counts: Counter[str] = Counter()
        lock = threading.Lock()
        proxy = self

        def forward(path: str, headers: dict[str, str], body: bytes, delay: float) -> None:
            time.sleep(delay)
            try:
                httpx.post(target + path, headers=headers, content=body, timeout=30)
            except httpx.HTTPError:
                proxy.counts["forward_failed"] += 1

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                with lock:
                    roll = rng.random()
                    delay = rng.uniform(0.5, 4.0)
                if roll < p_drop:
                    proxy.counts["dropped"] += 1
                elif roll < p_drop + p_dup:
                    proxy.counts["duplicated"] += 1
                    forward(self.path, headers, body, 0)
                    threading.Thread(target=forward, args=(self.path, headers, body, delay), daemon=True).start()
                elif roll < p_drop + p_dup + p_delay:
                    proxy.counts["delayed"] += 1
                    threading.Thread(target=forward, args=(self.path, headers, body, delay), daemon=True).start()
                else:
                    proxy.counts["passed"] += 1
                    forward(self.path, headers, body, 0)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Stack:
    """Azurite and the local host in ``base``; ``chaos`` False passes every event through untouched."""

    def __init__(self, base: Path, seed: int, *, chaos: bool = True, extra_env: dict[str, str] | None = None) -> None:
        self.base = base
        self.workdir = base / ".autopilot"
        self.az_dir = base / "azurite-home"
        self.azurite_hard_kills: list[float] = []  # time.monotonic() of each SIGKILL (its unsaved writes are lost)
        self.data = base / "data"
        blob, queue, table, self.host_port = processes.free_ports(4)
        self.ports = AzuritePorts(blob, queue, table)
        self.key = f"chaos-{seed}-{os.getpid()}"
        self.proxy = EventChaosProxy(
            f"http://127.0.0.1:{self.host_port}",
            random.Random(seed + 1),
            p_drop=0.2 if chaos else 0,
            p_dup=0.2 if chaos else 0,
            p_delay=0.2 if chaos else 0,
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")}
        self.env.update(
            AzureWebJobsStorage=self.ports_connection(),
            AUTOPILOT_PLATFORM="local",
            AUTOPILOT_WORKDIR=str(self.workdir),
            AUTOPILOT_DATA_ROOT=str(self.data),
            AUTOPILOT_HOST_PORT=str(self.host_port),
            AUTOPILOT_WEBHOOK_KEY=self.key,
            AUTOPILOT_WEBHOOK_URL=f"http://127.0.0.1:{self.proxy.port}/runtime/webhooks/EventGrid",
            AUTOPILOT_RECONCILE_SCHEDULE="*/5 * * * * *",
            AUTOPILOT_CLEANUP_SCHEDULE="*/10 * * * * *",
            AUTOPILOT_LOCAL_DTYPE="float32",
            # The orphan sweep cancels an orphaned job after this; the shortest setting, to see it within the run.
            AUTOPILOT_ORPHAN_GRACE_MINUTES="1",
            # The delivery worker on a fast timer; its receivers are on 127.0.0.1, as the local twin allows.
            AUTOPILOT_NOTIFY_SCHEDULE="*/3 * * * * *",
            AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES="true",
            PYTHONPATH=str(ROOT),
        )
        self.env.update(extra_env or {})
        os.environ.update(self.env)  # this process reads the same ledger

    def ports_connection(self) -> str:
        from local.host.azurite import connection_string

        return connection_string(self.ports)

    def prepare(self) -> None:
        self.data.joinpath("small").mkdir(parents=True)
        for name in ("train_sft", "test_sft", "test_gen"):
            lines = (SAMPLE / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[:8]
            (self.data / "small" / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.workdir.mkdir(parents=True)
        MODELS_CACHE.mkdir(parents=True, exist_ok=True)
        (self.workdir / "models").symlink_to(MODELS_CACHE, target_is_directory=True)

    def start_azurite(self) -> None:
        start_azurite(self.az_dir, self.ports, timeout_s=60)

    def kill_azurite(self, hard: bool) -> None:
        if hard:
            self.azurite_hard_kills.append(time.monotonic())
            record = processes.read_pid_file(pid_path(self.az_dir))
            if record and record.pgid:
                os.killpg(record.pgid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while record and processes.is_alive(record) and time.monotonic() < deadline:
                time.sleep(0.1)
            pid_path(self.az_dir).unlink(missing_ok=True)
        else:
            stop_azurite(self.az_dir)

    def start_host(self) -> None:
        proc = processes.start_detached(
            [sys.executable, "-m", "autopilot.main", "host"],
            log_path=self.workdir / "host.log",
            pid_path=self.workdir / "host.pid",
            name="host",
            cwd=ROOT,
            env=self.env,
        )
        processes.wait_for_port(
            self.host_port, timeout_s=60, process=proc, name="host", log_path=self.workdir / "host.log"
        )

    def stop_host(self, hard: bool) -> None:
        record = processes.read_pid_file(self.workdir / "host.pid")
        if hard and record and record.pgid:
            os.killpg(record.pgid, signal.SIGKILL)
            (self.workdir / "host.pid").unlink(missing_ok=True)
        else:
            processes.stop_pid_file(self.workdir / "host.pid", timeout_s=15)
        deadline = time.monotonic() + 15
        while processes.port_in_use(self.host_port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop_all(self) -> None:
        with_suppress(lambda: self.stop_host(hard=False))
        with_suppress(lambda: processes.stop_recorded_processes(self.workdir))
        with_suppress(lambda: stop_azurite(self.az_dir))


def with_suppress(fn: Any) -> None:
    try:
        fn()
    except Exception as exc:  # the stack is being torn down; report and go on
        log(f"teardown: {type(exc).__name__}: {exc}")


def pid_records(workdir: Path, prefix: str) -> list[processes.ProcessRecord]:
    out = []
    for path in sorted((workdir / "pids").glob(f"{prefix}-*.pid")):
        record = processes.read_pid_file(path)
        if record is not None and processes.is_alive(record):
            out.append(record)
    return out


def ledger() -> dict[str, Any]:
    from shared import runtime

    try:
        return {r.run_id: r for r in runtime.run_store().list()}
    except Exception as exc:  # Azurite may be down for a moment: the caller looks again
        log(f"ledger unavailable: {type(exc).__name__}")
        return {}


def inventory(stack: Stack) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    """App-tagged jobs, model versions and endpoints, as the local platform lists them (the orphan sweep's view),
    as their tags."""
    from local.platform.adapter import LocalPlatform
    from shared.settings import Settings

    platform = LocalPlatform(Settings.from_env(stack.env))
    jobs = [dict(j.tags) | {"_name": j.name} for j in platform.list_jobs()]
    models = [dict(m.tags) | {"_name": f"{m.name}:{m.version}"} for m in platform.list_models()]
    endpoints = [dict(e.tags) | {"_name": e.name} for e in platform.list_endpoints()]
    return jobs, models, endpoints


def recorded_orphans() -> set[tuple[str, str]]:
    """(kind, name) of what the last reconcile recorded as orphans (shared/services/orphans.py)."""
    from shared import runtime
    from shared.services.orphans import read_orphans

    return {(o.kind, o.name) for o in read_orphans(runtime.run_store().status)}


def lose_row(run: str) -> None:
    """Delete the run's ledger entity and its active-index entry, as a storage crash losing them would."""
    from shared import runtime
    from shared.ledger.table import ACTIVE_PARTITION, PARTITION

    table = runtime.run_store().ledger.table  # type: ignore[attr-defined]
    for partition in (PARTITION, ACTIVE_PARTITION):
        table.delete_entity(partition, run)


def orphan_action(kind: str, name: str) -> str:
    from shared import runtime
    from shared.services.orphans import read_orphans

    found = [o for o in read_orphans(runtime.run_store().status) if (o.kind, o.name) == (kind, name)]
    return f"{found[0].state}, {found[0].action}" if found else "not recorded"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--budget-s", type=float, default=840.0, help="give up waiting for convergence after this")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (logs, workdir)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="autopilot-chaos-"))
    key = lifecycle.signing_key(args.seed)
    stack = Stack(base, args.seed, extra_env={"AUTOPILOT_NOTIFY_SIGNING_KEY": key})
    hooks = lifecycle.receivers(random.Random(args.seed + 2), key)
    stack.prepare()
    kills: list[str] = []
    broken = ""  # why the platform could not list its jobs, models and endpoints at the end, if it could not
    try:
        stack.start_azurite()
        stack.start_host()
        log(f"stack up in {time.monotonic() - started:.1f}s (Azurite {stack.ports.all()}, host {stack.host_port})")
        from shared.storage import upload_config

        roles = {f"chaos/c{i}.yaml": lifecycle.role(i) for i in range(args.configs)}
        contents = {
            name: CONFIG.format(
                steps=2 + i % 3,
                lr=f"{1e-4 * (i + 1):.0e}",
                extra=lifecycle.config_extra(roles[name], [f"{h.url}/c{i}" for h in hooks]),
            ).encode()
            for i, name in enumerate(roles)
        }
        runs = {run_id(CONTAINER, name, data): name for name, data in contents.items()}
        from shared import runtime

        people = lifecycle.People(
            random.Random(args.seed + 3),
            manual={run for run, name in runs.items() if roles[name] == "manual"},
            # The cancel role's run; with fewer than four configs, any run.
            cancel_target=random.Random(args.seed + 4).choice(
                sorted(run for run, name in runs.items() if roles[name] == "cancel") or sorted(runs)
            ),
            store=runtime.run_store,
            platform=runtime.platform,
        )
        people_done = threading.Event()

        def act() -> None:
            while not people_done.is_set():
                try:
                    people.step(ledger())
                except Exception as exc:  # one look failed (Azurite down): the next one acts
                    log(f"people: {type(exc).__name__}: {exc}")
                time.sleep(0.5)

        threading.Thread(target=act, daemon=True).start()
        drops = [name for name in contents for _ in range(3)]
        rng.shuffle(drops)
        dropped_at: dict[str, float] = {}
        submitted_at: dict[str, float] = {}
        for name in drops:
            dropped_at.setdefault(name, time.time())  # wall clock: compared with the run's own timeline
            upload_config(stack.env["AzureWebJobsStorage"], CONTAINER, name, contents[name])
            time.sleep(rng.uniform(0, 0.3))

        def watch_submits() -> None:
            while len(submitted_at) < len(contents) and time.monotonic() - started < args.budget_s:
                for run, record in ledger().items():
                    name = runs.get(run)
                    if name and name not in submitted_at and record.state != RunState.RECEIVED:
                        # The host's timestamp of the move, not when this loop saw it.
                        entered = record.timeline.get(RunState.SUBMITTED.value)
                        submitted_at[name] = datetime.fromisoformat(entered).timestamp() if entered else time.time()
                time.sleep(0.05)

        watcher = threading.Thread(target=watch_submits, daemon=True)
        watcher.start()
        watcher.join(120)

        # Finding 7 on purpose: one run's ledger row is lost (as Azurite SIGKILLed lost its last writes) while its
        # job goes on. Reconcile's orphan sweep must record the job, and cancel it past the grace if it still runs.
        lost = rng.choice(sorted(runs))
        lose_row(lost)
        lost_at = time.monotonic()
        expected = {run: name for run, name in runs.items() if run != lost}
        kills.append(f"ledger row of {lost} lost")

        # Chaos, at seeded points.
        time.sleep(rng.uniform(1, 4))
        jobs_alive = pid_records(stack.workdir, "job")
        if jobs_alive:
            victim = rng.choice(jobs_alive)
            os.killpg(victim.pgid or victim.pid, signal.SIGKILL)
            kills.append(f"{victim.name} SIGKILL")
        for hard in (False, True):
            time.sleep(rng.uniform(2, 8))
            stack.stop_host(hard=hard)
            kills.append(f"host {'SIGKILL' if hard else 'SIGTERM'}")
            time.sleep(rng.uniform(0, 3))
            stack.start_host()
            time.sleep(rng.uniform(2, 8))
            stack.kill_azurite(hard=hard)
            kills.append(f"Azurite {'SIGKILL' if hard else 'SIGTERM'}")
            time.sleep(rng.uniform(0, 3))
            stack.start_azurite()
        # An endpoint server, once one is deployed.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not pid_records(stack.workdir, "endpoint"):
            time.sleep(2)
        servers = pid_records(stack.workdir, "endpoint")
        if servers:
            time.sleep(rng.uniform(5, 15))
            victim = rng.choice(servers)
            os.killpg(victim.pgid or victim.pid, signal.SIGKILL)
            kills.append(f"{victim.name} server SIGKILL")
        # A restart of everything, as `autopilot down` then `autopilot up`.
        time.sleep(rng.uniform(5, 15))
        stack.stop_host(hard=False)
        processes.stop_recorded_processes(stack.workdir)
        stop_azurite(stack.az_dir)
        kills.append("down + up")
        stack.start_azurite()
        stack.start_host()
        from local.platform.endpoints import Endpoints
        from local.platform.workspace import Workspace

        revived = Endpoints(Workspace(stack.workdir)).revive_all()
        log(f"chaos done: {', '.join(kills)}; up revived {len(revived)} endpoint(s)")

        # Converge: every run terminal or deployed, and no notification still owed.
        records: dict[str, Any] = {}

        def converged() -> bool:
            mine = [r for r in records.values() if r.run_id in expected]
            steady = len(mine) == len(expected) and all(r.state in STEADY for r in mine)
            return bool(records) and steady and not lifecycle.owing(records)

        while time.monotonic() - started < args.budget_s:
            records = ledger()
            if converged():
                break
            time.sleep(3)
        settled_s = time.monotonic() - started
        time.sleep(12)  # one more cleanup and reconcile sweep (health rule, orphan sweep) before counting
        records = ledger()
        while not converged() and time.monotonic() - started < args.budget_s:  # what that sweep made owed
            time.sleep(3)
            records = ledger()
        people_done.set()
        try:
            jobs, models, endpoints = inventory(stack)
        except Exception as exc:  # the platform itself broken (its registry): a finding, said as such
            broken = f"{type(exc).__name__}: {str(exc)[:200]}"
            log(f"the local platform could not list what it has: {broken}")
            jobs, models, endpoints = [], [], []
        # The lost run's job: recorded, and canceled if it still ran past the grace (or ended by itself).
        lost_job = orphan_action("job", lost)
        while ("not recorded" in lost_job or "canceled if" in lost_job) and time.monotonic() - started < args.budget_s:
            if lost in records:
                # A re-delivered upload of its config (the blob trigger after a host restart) made the row again
                # and found the job already submitted: the job is the run's once more, not an orphan.
                lost_job = f"not an orphan: its row was made again ({records[lost].state.value})"
                break
            time.sleep(3)
            lost_job = orphan_action("job", lost)
            records = ledger() or records
        seen_orphans = recorded_orphans()
        lost_seen_s = time.monotonic() - lost_at
    finally:
        stack.stop_all()

    per_config: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records.values():
        per_config[record.config_blob]["runs"] += 1
        per_config[record.config_blob][f"state:{record.state.value}"] += 1
    orphans: Counter[str] = Counter()
    unseen: list[str] = []
    for kind, items in (("jobs", jobs), ("model versions", models), ("endpoints", endpoints)):
        for tags in items:
            if tags.get(TAG_RUN_ID) not in records:
                orphans[kind] += 1
                if (ORPHAN_KIND[kind], tags["_name"]) not in seen_orphans:
                    unseen.append(f"{kind}:{tags['_name']}")
            per_config[tags.get(TAG_CONFIG, "?")][kind] += 1
    unsettled = [f"{r.run_id}={r.state.value}" for r in records.values() if r.state not in STEADY]
    # Why each run that did not reach ``deployed`` ended where it did: a chaos run that only ever fails
    # proves little, so the reasons are printed with the figures.
    ended = [r for r in records.values() if r.state != RunState.DEPLOYED]
    latencies = [submitted_at[n] - dropped_at[n] for n in submitted_at]
    print("\n== chaos figures ==")
    print(f"seed {args.seed}, {args.configs} configs x 3 uploads; kills: {', '.join(kills)}")
    print(f"events through the proxy: {dict(stack.proxy.counts)}")
    print(f"{'config':<16} {'runs':>4} {'jobs':>4} {'models':>6} {'endpoints':>9}  states")
    for config in sorted(per_config):
        c = per_config[config]
        states = ", ".join(f"{k[6:]}:{v}" for k, v in sorted(c.items()) if k.startswith("state:"))
        print(f"{config:<16} {c['runs']:>4} {c['jobs']:>4} {c['model versions']:>6} {c['endpoints']:>9}  {states}")
    for run in sorted({people.cancel_target, *people.manual} & {lost}):
        people.actions.append(f"nothing for {run}: chaos lost its ledger row")
    print(f"people: {'; '.join(people.actions) or 'nothing'}")
    notes = lifecycle.count_notifications(records, hooks, lost, stack.azurite_hard_kills)
    print(f"{'receiver':<8} {'behaviour':<28} {'owed':>4} {'accepted':>8} {'refused':>7}")
    for index, hook in enumerate(hooks):
        owed = sum(
            1 for r in records.values() for e in r.outbox.events for d in e.deliveries if d.to == f"webhook:{index}"
        )
        accepted, refused = sum(hook.accepted.values()), sum(hook.refused.values())
        print(f"{hook.name:<8} {hook.describe():<28} {owed:>4} {accepted:>8} {refused:>7}")
    print(
        f"notifications owed (run, event, webhook): {notes.owed}; delivered exactly once: {notes.delivered_once}; "
        f"re-sent after a lost outcome (same webhook-id): {notes.resent_after_lost}; "
        f"accepted for the lost row's run: {notes.lost_row} "
        f"(again after its row was made anew: {notes.resent_after_lost_row}); "
        f"re-sent after Azurite's SIGKILL lost the writes recording them: {notes.resent_after_storage_loss}"
    )
    print(f"given up: {sum(notes.given_up.values())} {dict(notes.given_up) or ''}")
    for label, found in (
        ("still owed", notes.still_owed),
        ("delivered per the outbox, never accepted", notes.missing),
        ("given up per the outbox, yet accepted", notes.disagree),
        ("accepted more than once", notes.duplicates),
        ("accepted, owed by no outbox", notes.unowed),
    ):
        print(f"{label}: {len(found)} {found[:10] if found else ''}")
    print(f"bad signatures: {notes.bad_signatures}")
    duplicates = sum(
        max(0, c[k] - 1) for c in per_config.values() for k in ("runs", "jobs", "model versions", "endpoints")
    )
    print(f"runs not terminal/steady: {len(unsettled)} {unsettled}")
    for r in ended:
        why = "; ".join(f"{e.path}: {e.message}" for e in r.errors)[:300]
        print(f"  not deployed: {r.run_id} {r.state.value} {r.last_error_code or ''} {why}")
    print(f"duplicates (beyond 1 per config): {duplicates}")
    print(f"orphans (app-tagged, no ledger row): {dict(orphans) or 0}; recorded by reconcile: {len(seen_orphans)}")
    print(f"unseen orphans (not in the orphan record): {len(unseen)} {unseen}")
    print(f"lost ledger row of {lost}: its job by the last look ({lost_seen_s:.0f}s after the loss): {lost_job}")
    if latencies:
        p95 = sorted(latencies)[max(0, round(0.95 * len(latencies)) - 1)]
        print(
            f"drop-to-submitted over {len(latencies)} configs: p50 {statistics.median(latencies):.2f}s, p95 {p95:.2f}s"
        )
    print(f"settled after {settled_s:.0f}s; total {time.monotonic() - started:.0f}s (budget {args.budget_s:.0f}s)")
    if args.keep:
        print(f"kept {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    if broken:
        print(f"platform inventory FAILED (nothing above counts its jobs, models, endpoints): {broken}")
    failed = bool(unsettled or unseen or duplicates or notes.violations or broken)
    print(
        f"verdict: {'FAIL' if failed else 'ok'} ({len(unsettled)} stuck, {duplicates} duplicates, "
        f"{len(unseen)} unseen orphans, {notes.violations} notification violations)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
