"""The offline evaluator of Event Grid filters, on the rules and examples of event-filtering.md."""

from __future__ import annotations

from typing import Any

import pytest

from tests.eventfilter import advanced_filter_matches, check_limits, matches, resolve_key

EVENT: dict[str, Any] = {
    "id": "1",
    "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
    "subject": "/blobServices/default/containers/Configs/blobs/a.yaml",
    "eventType": "Microsoft.Storage.BlobCreated",
    "dataVersion": "",
    "data": {
        "key1": "Azure Data Factory",
        "counter": 5,
        "isEnabled": True,
        "nullable": None,
        "list": ["Alpha", "beta"],
        "tags": {"autopilot_managed": "true", "autopilot.managed": "true"},
    },
}


def f(operator: str, key: str, *values: Any) -> dict[str, Any]:
    return {"operatorType": operator, "key": key, "values": list(values)}


def test_keys_nest_at_every_dot_and_a_dotted_name_cannot_be_reached() -> None:
    assert resolve_key(EVENT, "data.tags.autopilot_managed") == "true"
    # ``data.tags.autopilot.managed`` means tags -> autopilot -> managed: the literal key is out of reach.
    assert not advanced_filter_matches(EVENT, f("StringIn", "data.tags.autopilot.managed", "true"))
    assert advanced_filter_matches(EVENT, f("StringIn", "data.tags.autopilot_managed", "true"))


def test_envelope_keys_and_the_data_segment_in_the_documented_casings() -> None:
    assert advanced_filter_matches(EVENT, f("StringIn", "EventType", "microsoft.storage.blobcreated"))
    assert advanced_filter_matches(EVENT, f("StringBeginsWith", "Subject", "/blobservices/"))
    assert advanced_filter_matches(EVENT, f("StringIn", "Data.key1", "azure data factory"))


def test_below_data_the_segments_compare_exactly() -> None:
    assert not advanced_filter_matches(EVENT, f("StringIn", "data.Key1", "azure data factory"))


def test_string_comparisons_ignore_case_and_values_are_ored() -> None:
    assert advanced_filter_matches(EVENT, f("StringContains", "data.key1", "microsoft", "AZURE"))
    assert advanced_filter_matches(EVENT, f("StringEndsWith", "data.key1", "FACTORY"))
    assert not advanced_filter_matches(EVENT, f("StringIn", "data.key1", "azure"))


def test_not_operators_must_hold_for_every_value() -> None:
    assert not advanced_filter_matches(EVENT, f("StringNotIn", "data.key1", "aws", "azure data factory"))
    assert advanced_filter_matches(EVENT, f("StringNotIn", "data.key1", "aws", "bridge"))
    assert not advanced_filter_matches(EVENT, f("StringNotContains", "data.key1", "contoso", "data"))


def test_a_missing_key_matches_only_the_documented_operators() -> None:
    assert not advanced_filter_matches(EVENT, f("StringIn", "data.nope", "x"))
    assert not advanced_filter_matches(EVENT, f("StringNotContains", "data.nope", "x"))
    assert not advanced_filter_matches(EVENT, {"operatorType": "BoolEquals", "key": "data.nope", "value": True})
    assert advanced_filter_matches(EVENT, f("StringNotIn", "data.nope", "x"))
    assert advanced_filter_matches(EVENT, {"operatorType": "IsNullOrUndefined", "key": "data.nope"})
    assert advanced_filter_matches(EVENT, {"operatorType": "IsNullOrUndefined", "key": "data.nullable"})
    assert not advanced_filter_matches(EVENT, {"operatorType": "IsNotNull", "key": "data.nullable"})


def test_values_of_another_type_are_ignored() -> None:
    assert not advanced_filter_matches(EVENT, f("StringIn", "data.counter", "5"))
    assert advanced_filter_matches(EVENT, {"operatorType": "BoolEquals", "key": "data.isEnabled", "value": True})
    assert not advanced_filter_matches(EVENT, {"operatorType": "BoolEquals", "key": "data.key1", "value": True})


def test_arrays_are_looked_into_only_when_enabled() -> None:
    assert not advanced_filter_matches(EVENT, f("StringIn", "data.list", "beta"))
    assert advanced_filter_matches(EVENT, f("StringIn", "data.list", "BETA"), arrays=True)


def test_event_types_subject_and_filters_are_anded() -> None:
    flt = {
        "includedEventTypes": ["Microsoft.Storage.BlobCreated"],
        "subjectBeginsWith": "/blobServices/default/containers/configs/",
        "advancedFilters": [f("StringIn", "data.tags.autopilot_managed", "true")],
    }
    assert matches(EVENT, flt)
    assert not matches({**EVENT, "eventType": "Microsoft.Storage.BlobDeleted"}, flt)
    assert not matches(EVENT, {**flt, "isSubjectCaseSensitive": True})
    assert not matches(EVENT, {**flt, "advancedFilters": [*flt["advancedFilters"], f("StringIn", "data.key1", "x")]})


def test_unknown_operators_are_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match="NumberInRange"):
        advanced_filter_matches(EVENT, {"operatorType": "NumberInRange", "key": "data.counter", "values": [[1, 9]]})


def test_limits() -> None:
    assert check_limits({"advancedFilters": [f("StringIn", "data.a", "x")]}) == []
    too_many = {"advancedFilters": [f("StringIn", f"data.k{i}", "a", "b") for i in range(13)]}
    assert check_limits(too_many) == ["26 filter values; at most 25 across all filters"]
    assert "over 512" in check_limits({"advancedFilters": [f("StringIn", "data.a", "x" * 513)]})[0]
