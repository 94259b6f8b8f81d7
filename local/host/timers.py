"""Timer triggers on NCRONTAB schedules, one instance at a time per function (like Azure's singleton lock).

The next fire time is computed from the end of the previous run, so a run that outlasts its interval or a
host that was blocked fires once, late, with ``past_due`` set, instead of replaying every missed
occurrence. Exceptions are logged; the timer keeps going.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from azure.functions.timer import TimerRequest

from local.common.exceptions import ScheduleError
from local.host.discovery import FunctionSpec, Invocation, invoke
from local.host.ncrontab import NCrontab, parse

log = logging.getLogger(__name__)

# Fired later than this after its due time, an invocation is past due.
PAST_DUE_AFTER = timedelta(seconds=5)
# Waits are cut into slices so a changed clock (tests) or a stop request is noticed promptly.
MAX_WAIT_SLICE_S = 1.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def resolve_schedule(function: str, schedule: str, env: Mapping[str, str] | None = None) -> NCrontab:
    """Parse a timer's schedule; ``%Setting%`` is replaced by that app setting, as the runtime does."""
    source = os.environ if env is None else env
    match = re.fullmatch(r"%([^%]+)%", schedule.strip())
    if match:
        value = source.get(match.group(1), "")
        if not value:
            raise ScheduleError(f"function {function}: schedule setting {match.group(1)} is not set")
        schedule = value
    try:
        return parse(schedule)
    except ScheduleError as exc:
        raise ScheduleError(f"function {function}: {exc}") from None


class TimerFunction:
    """One timer function: its schedule, the next due time, and a lock so only one run happens at a time."""

    def __init__(self, spec: FunctionSpec, schedule: NCrontab, clock: Clock) -> None:
        self.spec = spec
        self.schedule = schedule
        self.run_on_startup = bool(spec.binding.get("runOnStartup") or spec.binding.get("run_on_startup"))
        self._clock = clock
        self._lock = threading.Lock()
        self.next_due = schedule.next_after(clock())

    def fire(self, past_due: bool = False) -> Invocation:
        """Run the function now (waiting for a run in progress to end first)."""
        with self._lock:
            request = TimerRequest(
                past_due=past_due,
                schedule_status={"Next": self.next_due.isoformat()},
                schedule={"AdjustForDST": False},
            )
            return invoke(self.spec, request, f"schedule {self.schedule.expression!r}")

    def fire_if_due(self) -> Invocation | None:
        """Fire if the due time has come; then schedule the next one from now."""
        now = self._clock()
        due = self.next_due
        if now < due:
            return None
        outcome = self.fire(past_due=now - due > PAST_DUE_AFTER)
        self.next_due = self.schedule.next_after(max(due, self._clock()))
        return outcome

    def run(self, stop: threading.Event, wait: Callable[[float], bool] | None = None) -> None:
        """Fire on schedule until ``stop`` is set. ``wait(seconds)`` returns True when the loop must end."""
        waiter = wait or stop.wait
        if self.run_on_startup and not stop.is_set():
            self.fire(past_due=False)
        while not stop.is_set():
            remaining = (self.next_due - self._clock()).total_seconds()
            if remaining > 0:
                if waiter(min(remaining, MAX_WAIT_SLICE_S)):
                    return
                continue
            self.fire_if_due()


class TimerScheduler:
    """All timer functions of the app, each on its own thread when started."""

    def __init__(
        self,
        functions: Mapping[str, FunctionSpec],
        clock: Clock = utc_now,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.timers = {
            name: TimerFunction(spec, resolve_schedule(name, str(spec.binding.get("schedule") or ""), env), clock)
            for name, spec in functions.items()
        }
        self._threads: list[threading.Thread] = []

    def fire(self, name: str, past_due: bool = False) -> Invocation:
        """Run one timer function now, whatever its schedule (tests and the CLI)."""
        if name not in self.timers:
            raise KeyError(f"no timer function named {name!r}; timers: {', '.join(sorted(self.timers)) or 'none'}")
        return self.timers[name].fire(past_due)

    def start(self, stop: threading.Event) -> None:
        for name, timer in self.timers.items():
            log.info(
                "timer %s: schedule %r, next at %s",
                name,
                timer.schedule.expression,
                timer.next_due.isoformat(),
            )
            thread = threading.Thread(target=timer.run, args=(stop,), name=f"timer-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self, timeout_s: float) -> None:
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()
