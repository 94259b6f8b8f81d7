"""The declared subscriptions (shared/subscriptions.py) against real and local payloads, through Event Grid's rules.

Real payloads: tests/fixtures/eventgrid-real/ (Azure's documented examples and the SDK's captured ones; see
SOURCE.md there).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from local.platform import eventpost
from shared.events import MODEL_DEPLOYED, parse_event
from shared.naming import app_tags, is_managed
from shared.subscriptions import DEPLOY_FUNCTION, REGISTER_FUNCTION, SUBSCRIPTIONS, function_for
from tests.eventfilter import check_limits, matches

REAL = Path(__file__).parents[2] / "fixtures" / "eventgrid-real"
RUN = "phi3-ultrachat-1a2b3c4d"
APP_TAGS = app_tags(RUN, "phi3-ultrachat.yaml")


def real(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((REAL / f"{name}.json").read_text(encoding="utf-8"))
    return event


def delivered_to(event: dict[str, Any]) -> list[str]:
    """The functions whose subscription would deliver ``event``."""
    return [s.function for s in SUBSCRIPTIONS if matches(event, s.filter_arm())]


def as_the_apps(event: dict[str, Any], tags_key: str, tags: dict[str, str] = APP_TAGS) -> dict[str, Any]:
    """A real payload standing for one of the app's jobs or models: the same shape, the app's tags."""
    event = copy.deepcopy(event)
    event["data"][tags_key] = dict(tags)
    return event


@pytest.mark.parametrize(
    ("name", "tags_key"),
    [
        ("docs_run_completed", "runTags"),
        ("docs_run_status_changed", "runTags"),
        ("sdk_net_run_completed", "RunTags"),  # the capture's own spelling
        ("sdk_net_run_status_changed", "runTags"),
    ],
)
def test_real_run_events_of_the_apps_jobs_reach_register(name: str, tags_key: str) -> None:
    assert tags_key in real(name)["data"]  # each payload keeps its own casing
    event = as_the_apps(real(name), tags_key)
    assert delivered_to(event) == [REGISTER_FUNCTION]
    assert is_managed(parse_event(event).run_tags)  # type: ignore[attr-defined]


def test_a_filter_on_run_tags_would_have_dropped_the_captured_run_completed() -> None:
    """Why RunCompleted has no tag filter: under the exact reading of data keys, ``data.runTags`` misses it."""
    from shared.naming import TAG_MANAGED

    captured = as_the_apps(real("sdk_net_run_completed"), "RunTags")
    run_tags_filter = {
        "advancedFilters": [{"operatorType": "StringIn", "key": f"data.runTags.{TAG_MANAGED}", "values": ["true"]}]
    }
    assert not matches(captured, run_tags_filter)


@pytest.mark.parametrize("name", ["docs_run_status_changed", "sdk_net_run_status_changed"])
def test_real_foreign_run_status_changes_are_not_delivered(name: str) -> None:
    assert delivered_to(real(name)) == []  # an AutoML run without the app's tags


@pytest.mark.parametrize("name", ["docs_run_completed", "sdk_net_run_completed"])
def test_real_foreign_run_completions_are_delivered_and_dropped_by_the_app(name: str) -> None:
    assert delivered_to(real(name)) == [REGISTER_FUNCTION]
    assert not is_managed(parse_event(real(name)).run_tags)  # type: ignore[attr-defined]


def test_dotted_tag_keys_could_never_match_a_filter() -> None:
    # Why the app's tag keys carry no '.' (shared/naming.py): the filter would read ``autopilot.managed`` as nesting.
    dotted = {k.replace("_", ".", 1): v for k, v in APP_TAGS.items()}
    event = as_the_apps(real("docs_run_status_changed"), "runTags", dotted)
    assert delivered_to(event) == []
    assert not is_managed(parse_event(event).run_tags)  # type: ignore[attr-defined]


def test_real_model_registered_reaches_deploy_in_both_casings_and_the_app_drops_foreign_ones() -> None:
    documented = real("docs_model_registered")  # PascalCase ``ModelTags``
    assert delivered_to(documented) == [DEPLOY_FUNCTION]
    assert not is_managed(parse_event(documented).model_tags)  # type: ignore[attr-defined]
    for key in ("ModelTags", "modelTags"):
        assert is_managed(parse_event(as_the_apps(documented, key)).model_tags)  # type: ignore[attr-defined]


def test_other_events_are_delivered_nowhere() -> None:
    deployed = as_the_apps(real("docs_model_deployed"), "ServiceTags")
    assert deployed["eventType"] == MODEL_DEPLOYED and delivered_to(deployed) == []
    blob = {"eventType": "Microsoft.Storage.BlobCreated", "subject": "/blobServices/default", "data": {}}
    assert delivered_to(blob) == []


def local_run_event(event_type: str, status: str | None) -> dict[str, Any]:
    return eventpost.to_wire(
        eventpost.run_event(
            event_type, job_name=RUN, experiment_id="1", experiment_name="exp", tags=APP_TAGS, status=status
        )
    )


@pytest.mark.parametrize(
    "event",
    [
        local_run_event(eventpost.RUN_STATUS_CHANGED, "Running"),
        local_run_event(eventpost.RUN_STATUS_CHANGED, "Failed"),
        local_run_event(eventpost.RUN_COMPLETED, None),
        eventpost.to_wire(eventpost.model_registered_event("m", "7", APP_TAGS)),
    ],
    ids=["running", "failed", "completed", "model-registered"],
)
def test_the_local_platforms_events_pass_the_filter_of_the_function_they_are_posted_to(event: dict[str, Any]) -> None:
    assert delivered_to(event) == [function_for(event["eventType"])]


def test_local_status_changes_of_a_foreign_job_do_not_reach_register() -> None:
    event = eventpost.to_wire(
        eventpost.run_event(
            eventpost.RUN_STATUS_CHANGED, job_name="x", experiment_id="1", experiment_name="e", tags={}, status="Failed"
        )
    )
    assert delivered_to(event) == []


def test_the_filters_are_within_event_grids_limits_and_name_only_keys_without_dots_below_the_tags() -> None:
    for subscription in SUBSCRIPTIONS:
        assert check_limits(subscription.filter_arm()) == []
        for flt in subscription.advanced_filters:
            assert "RunType" not in flt.key and "runType" not in flt.key  # no value of it was ever seen
            assert flt.key.count(".") == 2, flt.key  # data.<tags>.<key>: the tag key itself has no dot
