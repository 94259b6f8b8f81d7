"""Event wrappers: both casings, typed properties, malformed events are clear errors."""

from __future__ import annotations

import azure.functions as func
import pytest

from shared.events import (
    AzureMLEvent,
    EventError,
    ModelRegisteredEvent,
    RunEvent,
    from_function_event,
    parse_event,
    topic_matches,
)
from tests.eventdata import WORKSPACE_TOPIC, load_event


def test_run_completed_pascal_case() -> None:
    event = parse_event(load_event("run_completed_pascal", RUN_ID="phi3-1234abcd"))
    assert isinstance(event, RunEvent)
    assert event.run_id == "phi3-1234abcd" and event.run_status == "Completed"
    assert event.run_type == "azureml.PipelineRun" and not event.is_child_run
    assert event.run_tags["autopilot_run_id"] == "phi3-1234abcd"
    assert event.experiment_name == "chat_completion_Phi-3-mini-4k-instruct"
    assert event.short_type == "RunCompleted"


def test_the_captured_sdk_payloads_are_read_in_their_own_mixed_casing() -> None:
    """Azure/azure-sdk-for-net's captured RunCompleted spells ``RunTags`` beside camelCase keys; its
    RunStatusChanged spells ``runTags`` (tests/fixtures/eventgrid-real/SOURCE.md)."""
    import json
    from pathlib import Path

    real = Path(__file__).parents[2] / "fixtures" / "eventgrid-real"
    completed = parse_event(json.loads((real / "sdk_net_run_completed.json").read_text(encoding="utf-8")))
    changed = parse_event(json.loads((real / "sdk_net_run_status_changed.json").read_text(encoding="utf-8")))
    assert isinstance(completed, RunEvent) and isinstance(changed, RunEvent)
    for event in (completed, changed):
        assert event.run_id == "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc"
        assert event.run_tags == {
            "experiment_status": "ModelSelection",
            "experiment_status_descr": "Beginning model selection.",
        }
        assert event.run_type == "automl" and event.is_child_run  # not a pipeline: never one of the app's jobs
    assert (completed.run_status, changed.run_status) == ("Completed", "Running")


def test_run_status_changed_camel_case() -> None:
    event = parse_event(load_event("run_status_changed_camel", RUN_ID="r-1"))
    assert isinstance(event, RunEvent) and event.run_status == "Running" and event.run_id == "r-1"


def test_model_registered_version_is_text_even_if_int() -> None:
    raw = load_event("model_registered_camel", RUN_ID="r", MODEL_NAME="m", MODEL_VERSION="3")
    raw["data"]["modelVersion"] = 3
    event = parse_event(raw)
    assert isinstance(event, ModelRegisteredEvent) and event.model_version == "3" and event.model_name == "m"


def test_model_deployed_is_a_plain_event_the_app_does_not_act_on() -> None:
    # The app learns a deployment's state by polling; the event is wrapped only as far as its envelope.
    event = parse_event(load_event("model_deployed_pascal"))
    assert type(event) is AzureMLEvent and event.short_type == "ModelDeployed"


def test_child_step_detected_by_type_or_parent() -> None:
    raw = load_event("run_completed_pascal", RUN_ID="child")
    raw["data"]["RunType"] = "azureml.StepRun"
    assert parse_event(raw).is_child_run  # type: ignore[attr-defined]
    raw = load_event("run_completed_pascal", RUN_ID="child")
    raw["data"]["RunProperties"] = {"azureml.pipelinerunid": "parent"}
    assert parse_event(raw).is_child_run  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda e: e.pop("eventType"), "no eventType"),
        (lambda e: e.pop("id"), "no id"),
        (lambda e: e.update(data="x"), "no data object"),
        (lambda e: e["data"].pop("RunId"), "'runId'"),
        (lambda e: e["data"].update(RunTags=["x"]), "'runTags' must be an object"),
        (lambda e: e.update(eventType="Microsoft.MachineLearningServices.RunStatusChanged"), "'runStatus'"),
    ],
)
def test_malformed_events_are_event_errors(mutate, fragment: str) -> None:  # type: ignore[no-untyped-def]
    raw = load_event("run_completed_pascal", RUN_ID="r")
    mutate(raw)
    with pytest.raises(EventError, match=fragment):
        parse_event(raw)


def test_not_a_dict() -> None:
    with pytest.raises(EventError):
        parse_event(["x"])  # type: ignore[arg-type]


def test_function_event_object_is_wrapped() -> None:
    raw = load_event("run_status_changed_camel", RUN_ID="r-2")
    fe = func.EventGridEvent(
        id=raw["id"],
        data=raw["data"],
        topic=raw["topic"],
        subject=raw["subject"],
        event_type=raw["eventType"],
        event_time=None,
        data_version="2",
    )
    event = from_function_event(fe)
    assert isinstance(event, RunEvent) and event.run_id == "r-2"


def test_topic_filter_is_case_insensitive_and_optional() -> None:
    event = parse_event(load_event("run_completed_pascal", RUN_ID="r"))
    assert topic_matches(event, "")
    assert topic_matches(event, WORKSPACE_TOPIC.upper() + "/")
    assert not topic_matches(event, WORKSPACE_TOPIC.replace("ws-finetune", "ws-other"))


@pytest.mark.parametrize("bad", ["a/b", "../ledger", "x\\y", "r?1", "r#1", " r", "r\n"])
def test_a_managed_run_id_tag_with_path_or_key_characters_is_an_event_error(bad: str) -> None:
    # Before: the tag reached the Table ledger as a key; the handler raised and the webhook answered 500.
    raw = load_event("run_status_changed_camel", RUN_ID="phi3-1234abcd")
    raw["data"]["runTags"] = {"autopilot_managed": "true", "autopilot_run_id": bad}
    with pytest.raises(EventError, match="is not a run id"):
        parse_event(raw)
