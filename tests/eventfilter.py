"""Event Grid's documented filter rules, evaluated offline: does an event pass a subscription's ``filter``?
The tests hold the app's subscriptions (``shared/subscriptions.py``) against real events with it.

Written from "Understand event filtering for Event Grid subscriptions"
(https://learn.microsoft.com/azure/event-grid/event-filtering, MicrosoftDocs/azure-docs
articles/event-grid/event-filtering.md) for events in the Event Grid schema:

- ``includedEventTypes``: the event's type must be one of them (absent: every type).
- ``subjectBeginsWith`` / ``subjectEndsWith``: compared case-insensitively unless ``isSubjectCaseSensitive``.
- ``advancedFilters``: ANDed; the values of one filter are ORed, except the ``Not`` operators, which must hold
  for every value. Keys are ``Id``, ``Topic``, ``Subject``, ``EventType``, ``DataVersion`` (the docs spell them
  in other casings than the wire form, so the envelope and the ``data`` segment are found case-insensitively)
  or ``data.<a>.<b>``, every '.' one level of nesting, with no escape: a key whose name holds a '.' cannot be
  addressed. Below ``data`` the docs say nothing on casing; this evaluator compares those segments exactly,
  the stricter reading, so a filter that passes here does not rely on undocumented leniency.
- A key missing from the event: "not matched" for every operator except ``NumberNotIn`` and ``StringNotIn``
  (matched) and ``IsNullOrUndefined`` (true). String comparisons are case-insensitive. A value of another
  type than the operator's is ignored. An array value is only looked into with
  ``enableAdvancedFilteringOnArrays``; without it the filter does not match.
- Limits checked by :func:`check_limits`: 25 advanced filters and 25 values across them, 512 characters per
  string value.

Only the operators below are implemented; any other raises ``ValueError`` rather than guessing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

MAX_ADVANCED_FILTERS = 25
MAX_FILTER_VALUES = 25
MAX_STRING_VALUE_CHARS = 512

_MISSING = object()
_ENVELOPE = {"id": "id", "topic": "topic", "subject": "subject", "eventtype": "eventType", "dataversion": "dataVersion"}

_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "StringIn": lambda value, wanted: value == wanted,
    "StringBeginsWith": lambda value, wanted: value.startswith(wanted),
    "StringEndsWith": lambda value, wanted: value.endswith(wanted),
    "StringContains": lambda value, wanted: wanted in value,
}
# Each Not operator fails on a value its positive twin would match.
_NEGATED = {
    "StringNotIn": "StringIn",
    "StringNotBeginsWith": "StringBeginsWith",
    "StringNotEndsWith": "StringEndsWith",
    "StringNotContains": "StringContains",
}
# Documented as "matched" when the key is missing (all other value operators: "not matched").
_MATCH_WHEN_MISSING = {"StringNotIn", "NumberNotIn"}


def resolve_key(event: Mapping[str, Any], key: str) -> Any:
    """The value at ``key`` ('.'-nested) or ``_MISSING``."""
    head, *rest = key.split(".")
    if not rest:
        name = _ENVELOPE.get(head.lower())
        return event.get(name, _MISSING) if name else _MISSING
    if head.lower() != "data":
        return _MISSING
    value: Any = event.get("data", _MISSING)
    for segment in rest:
        if not isinstance(value, Mapping) or segment not in value:
            return _MISSING
        value = value[segment]
    return value


def _candidates(value: Any, arrays: bool) -> list[Any] | None:
    """The values an operator looks at; None when an array may not be looked into."""
    if isinstance(value, list):
        return list(value) if arrays else None
    return [value]


def advanced_filter_matches(event: Mapping[str, Any], flt: Mapping[str, Any], *, arrays: bool = False) -> bool:
    operator = str(flt.get("operatorType", ""))
    value = resolve_key(event, str(flt.get("key", "")))
    if operator == "IsNullOrUndefined":
        return value is _MISSING or value is None
    if operator == "IsNotNull":
        return value is not _MISSING and value is not None
    if value is _MISSING:
        if operator in _MATCH_WHEN_MISSING or operator in _STRING_TESTS or operator in _NEGATED:
            return operator in _MATCH_WHEN_MISSING
        if operator == "BoolEquals":
            return False
        raise ValueError(f"operator {operator!r} is not implemented by this evaluator")
    candidates = _candidates(value, arrays)
    if candidates is None:
        return False
    if operator == "BoolEquals":
        wanted = flt.get("value")
        return any(isinstance(c, bool) and c == wanted for c in candidates)
    positive = _NEGATED.get(operator, operator)
    test = _STRING_TESTS.get(positive)
    if test is None:
        raise ValueError(f"operator {operator!r} is not implemented by this evaluator")
    wanted_values = [str(v).lower() for v in flt.get("values", [])]
    strings = [c.lower() for c in candidates if isinstance(c, str)]  # other types are ignored
    hit = any(test(s, w) for s in strings for w in wanted_values)
    return not hit if operator in _NEGATED else hit


def _subject_matches(event: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    subject = str(event.get("subject") or "")
    begins = str(flt.get("subjectBeginsWith") or "")
    ends = str(flt.get("subjectEndsWith") or "")
    if not flt.get("isSubjectCaseSensitive", False):
        subject, begins, ends = subject.lower(), begins.lower(), ends.lower()
    return subject.startswith(begins) and subject.endswith(ends)


def matches(event: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    """Whether Event Grid would deliver ``event`` (Event Grid schema) to a subscription with ``filter``."""
    types: Sequence[str] | None = flt.get("includedEventTypes")
    if types and str(event.get("eventType", "")).lower() not in {t.lower() for t in types}:
        return False
    if not _subject_matches(event, flt):
        return False
    arrays = bool(flt.get("enableAdvancedFilteringOnArrays", False))
    return all(advanced_filter_matches(event, f, arrays=arrays) for f in flt.get("advancedFilters", []))


def check_limits(flt: Mapping[str, Any]) -> list[str]:
    """What in ``filter`` Event Grid would refuse (empty: nothing)."""
    problems = []
    filters = list(flt.get("advancedFilters", []))
    if len(filters) > MAX_ADVANCED_FILTERS:
        problems.append(f"{len(filters)} advanced filters; at most {MAX_ADVANCED_FILTERS}")
    values = [v for f in filters for v in f.get("values", [])]
    if len(values) > MAX_FILTER_VALUES:
        problems.append(f"{len(values)} filter values; at most {MAX_FILTER_VALUES} across all filters")
    problems += [
        f"value {v[:40]!r}... is over {MAX_STRING_VALUE_CHARS} characters"
        for v in values
        if isinstance(v, str) and len(v) > MAX_STRING_VALUE_CHARS
    ]
    return problems
