"""Property tests: any bytes give the config loader and any JSON gives the event parser a clean result or
their own error (``ConfigError`` / ``EventError``), never another exception (which would strand a run)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config.loader import load_config
from shared.events import AzureMLEvent, EventError, parse_event
from shared.exceptions import ConfigError

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# YAML scalars PyYAML resolves by pattern or explicit tag: the ones that used to escape the loader.
_TAGS = ["", "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!str ", "!!null ", "!!set ", "!!omap "]
_SCALARS = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"\A[0-9]{1,4}-[0-9]{1,2}-[0-9]{1,2}([ T][0-9]{1,2}:[0-9]{2}(:[0-9]{2})?)?\Z"),
    st.from_regex(r"\A[-+]?(0x|0o|0b)?[0-9a-zA-Z_]{1,12}\Z"),
    st.from_regex(r"\A[-+]?[0-9]*\.?[0-9]*([eE][-+]?[0-9]+)?\Z"),
    st.sampled_from(["9" * 5000, ".inf", ".nan", "~", "yes", "On", "maybe", "1_000", "0o99", "190:20:30"]),
)


@st.composite
def yaml_documents(draw: st.DrawFn) -> bytes:
    lines = []
    for key in draw(
        st.lists(
            st.sampled_from(["model", "data", "training", "compute", "x", "dataset_label"]),
            min_size=1,
            max_size=5,
            unique=True,
        )
    ):
        tag = draw(st.sampled_from(_TAGS))
        value = draw(_SCALARS).replace("\n", " ")
        nested = draw(st.booleans())
        lines.append(f"{key}:\n  inner: {tag}{value}" if nested else f"{key}: {tag}{value}")
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def _loads_cleanly(data: bytes) -> None:
    issues = None
    try:
        load_config(data)
    except ConfigError as exc:
        issues = exc.issues
    assert issues is None or (issues and all(isinstance(i.message, str) and i.message for i in issues))


@FAST
@given(yaml_documents())
def test_yaml_scalars_give_a_config_or_a_field_error(data: bytes) -> None:
    _loads_cleanly(data)


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_give_a_config_or_a_field_error(data: bytes) -> None:
    _loads_cleanly(data)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@FAST
@given(st.binary(max_size=200) | _JSON.map(lambda v: json.dumps(v).encode()))
def test_json_like_bytes_give_a_config_or_a_field_error(data: bytes) -> None:
    _loads_cleanly(data)


_TYPES = st.sampled_from(
    [
        "Microsoft.MachineLearningServices.RunCompleted",
        "Microsoft.MachineLearningServices.RunStatusChanged",
        "Microsoft.MachineLearningServices.ModelRegistered",
        "Microsoft.MachineLearningServices.ModelDeployed",
        "Other.Type",
    ]
)
_KEYS = st.sampled_from(
    [
        "runId",
        "RunId",
        "runStatus",
        "runTags",
        "runType",
        "runProperties",
        "modelName",
        "modelVersion",
        "modelTags",
        "serviceName",
        "serviceTags",
        "modelIds",
        "experimentName",
    ]
)
_TAG_VALUES = st.dictionaries(
    st.sampled_from(["autopilot.managed", "autopilot.run_id", "autopilot.config", "other"]),
    st.one_of(st.sampled_from(["true", "../x", "a/b", "run-0123abcd", ""]), _JSON),
    max_size=4,
)


@st.composite
def raw_events(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(_JSON)
    data = draw(st.dictionaries(_KEYS, st.one_of(_JSON, _TAG_VALUES), max_size=6))
    event: dict[str, Any] = {"id": draw(st.one_of(st.text(max_size=8), _JSON)), "eventType": draw(_TYPES), "data": data}
    if draw(st.booleans()):
        event["topic"] = draw(_JSON)
    return event


@FAST
@given(raw_events())
def test_any_event_is_parsed_or_an_event_error(raw: Any) -> None:
    outcome: object
    try:
        outcome = parse_event(raw)
    except EventError as exc:
        outcome = str(exc)
    assert isinstance(outcome, AzureMLEvent) or (isinstance(outcome, str) and outcome)
