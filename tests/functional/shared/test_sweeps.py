"""Reconcile sweeps at scale, on the in-memory ledger with a fake clock: only the active index is read, the
time budget leaves the rest for the next sweep, turns rotate so every run is handled within a bounded number
of sweeps, a run claimed by another sweep is left alone, and extra sweep steps share the budget."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

from shared.platform.port import JobInfo, JobStatus
from shared.runs import RunStore
from shared.services.reconcile import ReconcileReport, SweepContext, reconcile
from shared.services.sweep import SweepBudget
from shared.states import RunState
from tests.fakes import FakeClock, FakePlatform, InMemoryLedger, make_store

TIMEOUT = timedelta(minutes=60)


class SlowPlatform(FakePlatform):
    """Every job is running; each look at one takes ``seconds`` of the fake clock."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__(clock)
        self.seconds = seconds
        self.looked: list[str] = []

    def get_job(self, name: str) -> JobInfo:
        self.looked.append(name)
        self.clock.advance(seconds=self.seconds)
        return JobInfo(name=name, status=JobStatus.RUNNING)


def add_run(store: RunStore, clock: FakeClock, i: int, state: RunState = RunState.RUNNING) -> str:
    run = f"cfg{i:04d}-{i:08x}"
    store.create(
        run, config_blob=f"cfg{i:04d}.yaml", config_name=f"cfg{i:04d}", content=b"x", config_etag=None, platform="fake"
    )
    clock.advance(seconds=1)

    def job(r):  # type: ignore[no-untyped-def]
        r.job_name = run
        r.job_status = JobStatus.RUNNING.value

    store.advance(run, RunState.SUBMITTED, job)
    if state != RunState.SUBMITTED:
        store.advance(run, RunState.RUNNING if state == RunState.RUNNING else state)
    return run


def world(
    active: int, finished: int = 0, seconds: float = 1.0
) -> tuple[RunStore, InMemoryLedger, SlowPlatform, FakeClock, list[str]]:
    clock = FakeClock()
    store, ledger, _ = make_store(clock)
    platform = SlowPlatform(clock, seconds)
    for i in range(finished):
        add_run(store, clock, 10_000 + i, RunState.CANCELED)
    runs = [add_run(store, clock, i) for i in range(active)]
    return store, ledger, platform, clock, runs


def sweep(store: RunStore, platform: SlowPlatform, clock: FakeClock, seconds: float, **kwargs) -> ReconcileReport:  # type: ignore[no-untyped-def]
    return reconcile(
        store,
        platform,
        deploy_timeout=TIMEOUT,
        budget=SweepBudget(seconds=seconds, concurrency=1),
        monotonic=lambda: clock.now.timestamp(),
        **kwargs,
    )


def test_a_sweep_out_of_budget_leaves_the_rest_for_the_next_and_every_run_is_handled_in_bounded_sweeps() -> None:
    store, _, platform, clock, runs = world(active=10)
    first = sweep(store, platform, clock, seconds=3.5)  # 1 s per run: starts 4, then the budget is spent
    assert [o.run_id for o in first.outcomes] == runs[:4]
    assert first.left == runs[4:]

    clock.advance(minutes=5)
    second = sweep(store, platform, clock, seconds=3.5)
    assert [o.run_id for o in second.outcomes] == runs[4:8]  # what was left goes first

    seen: dict[str, int] = {r: 1 for r in runs[:4]} | {r: 2 for r in runs[4:8]}
    for n in range(3, 10):
        clock.advance(minutes=5)
        for o in sweep(store, platform, clock, seconds=3.5).outcomes:
            seen.setdefault(o.run_id, n)
        if len(seen) == len(runs):
            break
    per_sweep = 4
    assert set(seen) == set(runs)
    assert max(seen.values()) <= math.ceil(len(runs) / per_sweep)
    # Rotation: over 5 sweeps (20 turns) every run was looked at exactly twice, none starved, none favoured.
    platform.looked.clear()
    for _ in range(5):
        clock.advance(minutes=5)
        sweep(store, platform, clock, seconds=3.5)
    assert sorted(platform.looked) == sorted(runs * 2)


def test_a_sweep_reads_the_active_index_not_the_finished_runs() -> None:
    store, ledger, platform, clock, runs = world(active=5, finished=200)
    ledger.calls.clear()
    report = sweep(store, platform, clock, seconds=600)
    assert sorted(o.run_id for o in report.outcomes) == sorted(runs)
    assert ledger.calls["list"] == 0 and ledger.calls["active"] == 1
    assert ledger.calls["get"] == len(runs)  # one read per active run, none per finished run
    assert ledger.calls["claim"] == len(runs)


def test_a_run_claimed_by_another_sweep_is_left_alone() -> None:
    store, ledger, platform, clock, runs = world(active=3)
    (held,) = [e for e in ledger.active() if e.run_id == runs[1]]
    assert ledger.claim(held, clock.now, clock.now + timedelta(minutes=10))  # another sweep took it
    report = sweep(store, platform, clock, seconds=600)
    assert runs[1] not in platform.looked and len(platform.looked) == 2
    assert runs[1] not in [o.run_id for o in report.outcomes]
    clock.advance(minutes=11)  # that sweep's lease ran out (it died): the run is handled again
    platform.looked.clear()
    sweep(store, platform, clock, seconds=600)
    assert runs[1] in platform.looked


def test_finished_runs_leave_the_index_and_received_runs_stay_until_their_deadline() -> None:
    store, ledger, platform, clock, runs = world(active=2)
    store.advance(runs[0], RunState.CANCELED)
    store.create(
        "late-00000001", config_blob="late.yaml", config_name="late", content=b"y", config_etag=None, platform="fake"
    )
    assert {e.run_id for e in ledger.active()} == {runs[1], "late-00000001"}
    report = sweep(store, platform, clock, seconds=600)
    # The received run is looked at (stranded only past AUTOPILOT_RECEIVED_DEADLINE_MINUTES) and stays.
    assert {o.run_id for o in report.outcomes} == {runs[1], "late-00000001"}
    assert store.get("late-00000001").state == RunState.RECEIVED  # type: ignore[union-attr]
    assert {e.run_id for e in ledger.active()} == {runs[1], "late-00000001"}


def test_concurrent_sweep_handles_every_run_once() -> None:
    store, _, platform, _clock, runs = world(active=24, seconds=0)
    report = reconcile(store, platform, deploy_timeout=TIMEOUT, budget=SweepBudget(seconds=600, concurrency=6))
    assert sorted(o.run_id for o in report.outcomes) == sorted(runs)
    assert sorted(platform.looked) == sorted(runs)


def test_extra_sweep_steps_share_the_budget() -> None:
    store, _, platform, clock, _runs = world(active=3)
    seen: list[float] = []

    def stranded(ctx: SweepContext, report: ReconcileReport) -> None:
        seen.append(ctx.deadline.left())

    from shared.services.reconcile import sweep_runs

    report = sweep(store, platform, clock, seconds=10, sweeps=(sweep_runs, stranded))
    assert seen == [7.0] and not report.skipped_steps  # 3 runs took 3 s of the 10
    seen.clear()
    report = sweep(store, platform, clock, seconds=2.5, sweeps=(sweep_runs, stranded))
    assert seen == [] and report.skipped_steps == ["stranded"]


def test_an_entry_of_a_run_being_created_is_kept_and_a_stale_one_dropped() -> None:
    store, ledger, platform, clock, runs = world(active=1)
    existing = ledger.get(runs[0])
    assert existing is not None
    ledger.create(replace(existing, run_id="tmp-00000001", created_at=clock.now))
    del ledger._rows["tmp-00000001"]  # as if ``create`` wrote the index entry and the run row is not there yet
    sweep(store, platform, clock, seconds=600)
    assert "tmp-00000001" in {e.run_id for e in ledger.active()}
    clock.advance(hours=2)  # its creator died before writing the run: the entry is stale now
    report = sweep(store, platform, clock, seconds=600)
    assert "tmp-00000001" not in {e.run_id for e in ledger.active()}
    assert [o.run_id for o in report.outcomes] == runs


def test_storage_failing_for_one_run_does_not_stop_the_sweep_and_it_goes_first_next_time() -> None:
    store, ledger, platform, clock, runs = world(active=3)
    ledger.unreadable.add(runs[0])
    report = sweep(store, platform, clock, seconds=600)
    assert [(o.run_id, o.error) for o in report.outcomes if o.error] == [(runs[0], "storage failed; next sweep")]
    assert sorted(platform.looked) == sorted(runs[1:])
    ledger.unreadable.clear()
    clock.advance(minutes=5)
    platform.looked.clear()
    sweep(store, platform, clock, seconds=1.5)  # room for two: the one that failed is among them
    assert platform.looked[0] == runs[0]
