from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from local.common.exceptions import ScheduleError
from local.host.ncrontab import NCrontab, parse


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", "2026-03-10T10:02:30", ["2026-03-10T10:05:00", "2026-03-10T10:10:00"]),
        # Strictly after: a time that is itself a fire time gives the next one.
        ("0 */5 * * * *", "2026-03-10T10:05:00", ["2026-03-10T10:10:00"]),
        ("*/10 * * * * *", "2026-03-10T10:00:05", ["2026-03-10T10:00:10", "2026-03-10T10:00:20"]),
        ("5/15 * * * * *", "2026-03-10T10:00:00", ["2026-03-10T10:00:05", "2026-03-10T10:00:20"]),
        ("0 0 */6 * * *", "2026-03-10T19:00:00", ["2026-03-11T00:00:00", "2026-03-11T06:00:00"]),
        ("0 15,45 8-9 * * *", "2026-03-10T08:50:00", ["2026-03-10T09:15:00", "2026-03-10T09:45:00"]),
        # 2026-01-02 is a Friday: weekday names skip the weekend.
        ("0 30 9 * * MON-FRI", "2026-01-02T10:00:00", ["2026-01-05T09:30:00", "2026-01-06T09:30:00"]),
        ("0 0 0 1 JAN,jul *", "2026-03-10T00:00:00", ["2026-07-01T00:00:00", "2027-01-01T00:00:00"]),
        ("0 0 0 1 1 *", "2026-12-31T23:59:59", ["2027-01-01T00:00:00"]),
        # Leap day: the next one after March 2025 is in 2028.
        ("0 0 12 29 2 *", "2025-03-01T00:00:00", ["2028-02-29T12:00:00"]),
        # Day of month AND day of week (NCrontab): Friday the 13th.
        ("0 0 0 13 * 5", "2026-01-01T00:00:00", ["2026-02-13T00:00:00", "2026-03-13T00:00:00"]),
        ("0 0 0 * * 0", "2026-03-10T00:00:00", ["2026-03-15T00:00:00"]),
    ],
)
def test_next_fire_times(expression: str, after: str, expected: list[str]) -> None:
    schedule, times = parse(expression), [at(after)]
    for _ in expected:
        times.append(schedule.next_after(times[-1]))
    assert times[1:] == [at(e) for e in expected]


def test_result_is_utc_and_input_in_another_zone_is_converted() -> None:
    cet = timezone(timedelta(hours=1))
    # 10:02 in UTC+1 is 09:02 UTC.
    nxt = parse("0 0 * * * *").next_after(datetime(2026, 3, 10, 10, 2, tzinfo=cet))
    assert nxt == at("2026-03-10T10:00:00")
    assert nxt.tzinfo == UTC


def test_naive_input_is_taken_as_utc_and_microseconds_do_not_skip_a_second() -> None:
    assert parse("* * * * * *").next_after(datetime(2026, 3, 10, 10, 0, 0, 999999)) == at("2026-03-10T10:00:01")


def _matches(s: NCrontab, t: datetime) -> bool:
    return (
        t.second in s.seconds
        and t.minute in s.minutes
        and t.hour in s.hours
        and t.day in s.days
        and t.month in s.months
        and (t.weekday() + 1) % 7 in s.weekdays
    )


@pytest.mark.parametrize("expression", ["*/7 3-50/5 * * * *", "30 59 23 * * *", "0 0 1-3 * * SAT,SUN"])
def test_next_after_agrees_with_a_brute_force_scan(expression: str) -> None:
    schedule = parse(expression)
    t = at("2026-02-27T22:58:00")
    for _ in range(3):
        nxt = schedule.next_after(t)
        probe = t + timedelta(seconds=1)
        while not _matches(schedule, probe):
            probe += timedelta(seconds=1)
        assert nxt == probe
        t = nxt


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("", "empty"),
        ("* * * * *", "has 5 fields"),
        ("0 */5 * * * * *", "has 7 fields"),
        ("60 * * * * *", "second value 60 is out of range 0-59"),
        ("0 60 * * * *", "minute value 60"),
        ("0 0 24 * * *", "hour value 24"),
        ("0 0 0 0 * *", "day value 0"),
        ("0 0 0 * 13 *", "month value 13"),
        ("0 0 0 * * 7", "day-of-week value 7"),
        ("*/0 * * * * *", "step '0' must be a whole number >= 1"),
        ("*/x * * * * *", "step 'x'"),
        ("a * * * * *", "second value 'a' is not a number"),
        ("0 0 0 * FOO *", "month value 'FOO' is not a number or a name"),
        ("5-1 * * * * *", "runs backwards"),
        ("1,,2 * * * * *", "empty list item"),
        ("0 0 0 30 2 *", "never fires"),
        ("0 0 0 31 4,6 *", "never fires"),
    ],
)
def test_bad_expressions_name_the_problem(expression: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse(expression)
    assert fragment in str(info.value)
