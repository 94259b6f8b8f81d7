"""Six-field NCRONTAB schedules (``second minute hour day month day-of-week``), as Azure Functions timers use.

Times are UTC. Each field takes ``*``, a value, a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (from
``a`` to the field's end), and comma-separated lists of those. Months and days of the week also take
three-letter names (``JAN``, ``MON``); Sunday is 0. As in NCrontab, a time must match the day of the month
AND the day of the week (classic cron ORs them when both are restricted).
"""

from __future__ import annotations

import bisect
import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from local.common.exceptions import ScheduleError

_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("second", 0, 59, {}),
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day", 1, 31, {}),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 6, _DAYS),
)

# The longest a satisfiable schedule can wait: Feb 29 on a given weekday recurs within 28 years, except
# across a skipped century leap year. Forty years of days bounds the search.
_MAX_DAYS = 366 * 40


def _value(token: str, field: _Field, expression: str) -> int:
    text = token.strip().upper()
    if text in field.names:
        return field.names[text]
    if not text.isdigit():
        hint = f" or a name like {next(iter(field.names))}" if field.names else ""
        raise ScheduleError(
            f"schedule {expression!r}: {field.name} value {token!r} is not a number{hint} "
            f"(expected {field.low}-{field.high})"
        )
    value = int(text)
    if not field.low <= value <= field.high:
        raise ScheduleError(
            f"schedule {expression!r}: {field.name} value {value} is out of range {field.low}-{field.high}"
        )
    return value


def _parse_field(text: str, field: _Field, expression: str) -> tuple[int, ...]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"schedule {expression!r}: {field.name} field {text!r} has an empty list item")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ScheduleError(
                    f"schedule {expression!r}: {field.name} step {step_text!r} must be a whole number >= 1"
                )
            step = int(step_text)
        if base == "*":
            first, last = field.low, field.high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first, last = _value(first_text, field, expression), _value(last_text, field, expression)
            if first > last:
                raise ScheduleError(
                    f"schedule {expression!r}: {field.name} range {base!r} runs backwards (start > end)"
                )
        else:
            first = _value(base, field, expression)
            # ``a/n`` steps from ``a`` to the end of the field, as NCrontab does.
            last = field.high if slash else first
        values.update(range(first, last + 1, step))
    return tuple(sorted(values))


@dataclass(frozen=True)
class NCrontab:
    """A parsed schedule; :meth:`next_after` gives the next fire time."""

    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after`` (a naive ``after`` is taken as UTC), in UTC."""
        start = (after.replace(tzinfo=UTC) if after.tzinfo is None else after.astimezone(UTC)).replace(
            microsecond=0
        ) + timedelta(seconds=1)
        day = start.date()
        from_time: time | None = start.time()
        for _ in range(_MAX_DAYS):
            if day.month not in self.months:
                # Jump to the first day of the next month: most days of an excluded month are skipped at once.
                day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
                from_time = None
                continue
            if self._day_matches(day):
                at = self._first_time_from(from_time or time(0, 0, 0))
                if at is not None:
                    return datetime.combine(day, at, tzinfo=UTC)
            day += timedelta(days=1)
            from_time = None
        raise ScheduleError(f"schedule {self.expression!r} has no fire time in the next 40 years")

    def _day_matches(self, day: date) -> bool:
        return day.day in self.days and (day.weekday() + 1) % 7 in self.weekdays

    def _first_time_from(self, at: time) -> time | None:
        for hour in self.hours[bisect.bisect_left(self.hours, at.hour) :]:
            min_minute = at.minute if hour == at.hour else 0
            for minute in self.minutes[bisect.bisect_left(self.minutes, min_minute) :]:
                min_second = at.second if (hour, minute) == (at.hour, at.minute) else 0
                i = bisect.bisect_left(self.seconds, min_second)
                if i < len(self.seconds):
                    return time(hour, minute, self.seconds[i])
        return None


def parse(expression: str) -> NCrontab:
    """Parse a six-field NCRONTAB expression; :class:`ScheduleError` names the field and the expectation."""
    if not isinstance(expression, str) or not expression.strip():
        raise ScheduleError("schedule is empty: expected six fields 'second minute hour day month day-of-week'")
    parts = expression.split()
    if len(parts) != len(_FIELDS):
        raise ScheduleError(
            f"schedule {expression!r} has {len(parts)} fields: expected six "
            "'second minute hour day month day-of-week', e.g. '0 */5 * * * *'"
        )
    values = [_parse_field(text, field, expression) for text, field in zip(parts, _FIELDS, strict=True)]
    schedule = NCrontab(expression, *values)
    # A day no allowed month has (30 February) means the schedule never fires: say so now, not at run time.
    if not any(day <= calendar.monthrange(2000, month)[1] for month in schedule.months for day in schedule.days):
        raise ScheduleError(f"schedule {expression!r} never fires: no allowed month has the allowed days")
    return schedule
