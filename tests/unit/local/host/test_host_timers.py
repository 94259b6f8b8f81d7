from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from local.common.exceptions import ScheduleError
from local.host.discovery import discover
from local.host.timers import TimerScheduler


class FakeClock:
    """Time that moves only when the test (or the fake wait) moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


START = datetime(2026, 3, 10, 10, 2, 30, tzinfo=UTC)


def timer_app(
    calls: list[TimerRequest],
    schedule: str = "0 */5 * * * *",
    fire_at_start: bool = False,
    fail: bool = False,
    on_call: object = None,
) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.function_name("tick")
    @app.timer_trigger(arg_name="timer", schedule=schedule, run_on_startup=fire_at_start)
    def tick(timer: TimerRequest) -> None:
        calls.append(timer)
        if callable(on_call):
            on_call()
        if fail:
            raise RuntimeError("timer body failed")

    return app


def scheduler(app: func.FunctionApp, clock: FakeClock, env: dict[str, str] | None = None) -> TimerScheduler:
    return TimerScheduler(discover(app).timer, clock, env or {})


def test_fires_at_the_due_time_and_not_before() -> None:
    calls: list[TimerRequest] = []
    clock = FakeClock(START)
    tick = scheduler(timer_app(calls), clock).timers["tick"]
    assert tick.next_due == datetime(2026, 3, 10, 10, 5, tzinfo=UTC)
    clock.now = tick.next_due - timedelta(seconds=1)
    assert tick.fire_if_due() is None
    assert calls == []
    clock.now = tick.next_due
    outcome = tick.fire_if_due()
    assert outcome is not None and outcome.succeeded
    [request] = calls
    assert isinstance(request, TimerRequest)
    assert request.past_due is False
    assert tick.next_due == datetime(2026, 3, 10, 10, 10, tzinfo=UTC)


def test_a_late_fire_is_past_due_and_missed_occurrences_collapse_into_one() -> None:
    calls: list[TimerRequest] = []
    clock = FakeClock(START)
    tick = scheduler(timer_app(calls), clock).timers["tick"]
    # The host was blocked from 10:05 to 10:17: one late run, then back on schedule.
    clock.now = datetime(2026, 3, 10, 10, 17, 3, tzinfo=UTC)
    tick.fire_if_due()
    assert [c.past_due for c in calls] == [True]
    assert tick.next_due == datetime(2026, 3, 10, 10, 20, tzinfo=UTC)
    assert tick.fire_if_due() is None


def test_a_few_seconds_late_is_not_past_due() -> None:
    calls: list[TimerRequest] = []
    clock = FakeClock(START)
    tick = scheduler(timer_app(calls), clock).timers["tick"]
    clock.now = tick.next_due + timedelta(seconds=2)
    tick.fire_if_due()
    assert [c.past_due for c in calls] == [False]


def test_the_loop_fires_on_schedule_and_survives_exceptions() -> None:
    calls: list[TimerRequest] = []
    clock = FakeClock(START)
    stop = threading.Event()
    tick = scheduler(timer_app(calls, schedule="0 * * * * *", fail=True), clock).timers["tick"]

    def wait(seconds: float) -> bool:
        clock.advance(seconds)  # instead of sleeping, move the fake time
        if len(calls) >= 3:
            stop.set()
        return stop.is_set()

    tick.run(stop, wait)
    # Every call raised; the timer kept going, each at its minute, none past due.
    assert len(calls) == 3
    assert all(not c.past_due for c in calls)
    assert tick.next_due == datetime(2026, 3, 10, 10, 6, tzinfo=UTC)


def test_the_loop_marks_a_fire_after_a_long_block_as_past_due() -> None:
    calls: list[TimerRequest] = []
    clock = FakeClock(START)
    stop = threading.Event()
    tick = scheduler(timer_app(calls, schedule="0 * * * * *"), clock).timers["tick"]
    blocked = {"done": False}

    def wait(seconds: float) -> bool:
        if not blocked["done"]:
            blocked["done"] = True
            clock.advance(600)  # the machine slept for ten minutes inside one wait
        else:
            clock.advance(seconds)
        if len(calls) >= 2:
            stop.set()
        return stop.is_set()

    tick.run(stop, wait)
    assert [c.past_due for c in calls] == [True, False]


def test_run_on_startup_fires_once_at_start() -> None:
    calls: list[TimerRequest] = []
    stop = threading.Event()
    tick = scheduler(timer_app(calls, fire_at_start=True), FakeClock(START)).timers["tick"]
    assert tick.run_on_startup

    def wait(seconds: float) -> bool:
        stop.set()
        return True

    tick.run(stop, wait)
    assert [c.past_due for c in calls] == [False]


def test_only_one_run_at_a_time_per_function() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def on_call() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    calls: list[TimerRequest] = []
    timers = scheduler(timer_app(calls, on_call=on_call), FakeClock(START))
    threads = [threading.Thread(target=timers.fire, args=("tick",)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 4
    assert peak == 1


def test_fire_by_name_and_unknown_name() -> None:
    calls: list[TimerRequest] = []
    timers = scheduler(timer_app(calls), FakeClock(START))
    assert timers.fire("tick", past_due=True).succeeded
    assert calls[0].past_due is True
    with pytest.raises(KeyError, match="no timer function named 'nope'; timers: tick"):
        timers.fire("nope")


def test_schedule_from_an_app_setting() -> None:
    calls: list[TimerRequest] = []
    timers = scheduler(timer_app(calls, schedule="%MY_SCHEDULE%"), FakeClock(START), {"MY_SCHEDULE": "0 0 * * * *"})
    assert timers.timers["tick"].next_due == datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
    with pytest.raises(ScheduleError, match="function tick: schedule setting MY_SCHEDULE is not set"):
        scheduler(timer_app(calls, schedule="%MY_SCHEDULE%"), FakeClock(START), {"OTHER": "x"})


def test_a_bad_schedule_names_the_function() -> None:
    with pytest.raises(ScheduleError, match=r"function tick: schedule '\*/5 \* \* \* \*' has 5 fields"):
        scheduler(timer_app([], schedule="*/5 * * * *"), FakeClock(START))
