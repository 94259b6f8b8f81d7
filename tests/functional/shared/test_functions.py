"""The real function objects of function_app, called with real trigger objects, wired to fakes."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.blob import InputStream
from azure.functions.timer import TimerRequest

import function_app
from local.host.discovery import discover
from shared.settings import Settings
from shared.states import RunState
from tests.configs import config_bytes
from tests.eventdata import load_event
from tests.fakes import FakePlatform, make_store

ROOT = Path(__file__).resolve().parents[3]
# get_functions() runs once per app object; the local host's discovery keeps its result for everyone.
FUNCTIONS = {spec.name: spec for spec in discover(function_app.app).all()}


def user_function(name: str):  # type: ignore[no-untyped-def]
    return FUNCTIONS[name].user_function


@pytest.fixture
def wired(use_runtime):  # type: ignore[no-untyped-def]
    store, _, status = make_store()
    platform = FakePlatform(store.clock)  # type: ignore[arg-type]
    use_runtime(Settings.from_env({"AUTOPILOT_PLATFORM": "local"}), store=store, platform=platform)
    return store, platform, status


def grid_event(raw: dict) -> func.EventGridEvent:  # type: ignore[type-arg]
    return func.EventGridEvent(
        id=raw["id"],
        data=raw["data"],
        topic=raw["topic"],
        subject=raw["subject"],
        event_type=raw["eventType"],
        event_time=datetime.fromisoformat(raw["eventTime"].replace("0000000Z", "+00:00")),
        data_version="2",
    )


def test_app_declares_the_five_functions_with_settings_driven_bindings() -> None:
    triggers = {name: spec.binding for name, spec in FUNCTIONS.items()}
    assert triggers["submit"]["type"] == "blobTrigger" and triggers["submit"]["path"] == "training-configs/{name}"
    assert triggers["submit"]["connection"] == "AzureWebJobsStorage"
    assert triggers["register"]["type"] == triggers["deploy"]["type"] == "eventGridTrigger"
    assert triggers["reconcile"]["schedule"] == "0 */5 * * * *" and triggers["reconcile"]["runOnStartup"] is False
    assert triggers["cleanup"]["type"] == "timerTrigger"
    assert triggers["followup"]["type"] == "queueTrigger" and triggers["followup"]["queueName"] == "autopilot-followups"
    assert triggers["followup"]["connection"] == "AzureWebJobsStorage"  # identity-based on Azure, as the blob's


def test_schedules_and_containers_come_from_settings() -> None:
    code = (
        "import function_app; fs = {f.get_function_name(): f.get_trigger().get_dict_repr() "
        "for f in function_app.app.get_functions()}; print(fs['submit']['path'], fs['cleanup']['schedule'])"
    )
    env = {
        "AUTOPILOT_CONFIG_CONTAINER": "my-configs",
        "AUTOPILOT_CLEANUP_SCHEDULE": "0 0 * * * *",
        "PATH": "",
    }
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["my-configs/{name}", "0", "0", "*", "*", "*", "*"]


def test_importing_the_app_loads_no_heavy_sdk() -> None:
    code = (
        "import sys, function_app; "
        "print([m for m in ('azure.ai.ml', 'mlflow', 'torch', 'transformers', 'peft') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_blob_trigger_submits(wired) -> None:  # type: ignore[no-untyped-def]
    store, platform, status = wired
    data = config_bytes()
    blob = InputStream(data=data, name="training-configs/phi3.yaml", uri="http://x/phi3.yaml", length=len(data))
    user_function("submit")(blob)
    (record,) = store.list()
    assert record.state == RunState.SUBMITTED and len(platform.jobs) == 1
    assert status.blobs["phi3.yaml.json"]["state"] == "submitted"


def test_blob_trigger_rejects_bad_bytes_without_raising(wired) -> None:  # type: ignore[no-untyped-def]
    store, _, _ = wired
    data = b"\xff\xfe not yaml"
    user_function("submit")(InputStream(data=data, name="training-configs/bad.yaml", uri="u", length=len(data)))
    (record,) = store.list()
    assert record.state == RunState.REJECTED and "UTF-8" in record.errors[0].message


def test_event_functions_drive_the_flow(wired) -> None:  # type: ignore[no-untyped-def]
    store, platform, _ = wired
    data = config_bytes()
    user_function("submit")(InputStream(data=data, name="training-configs/phi3.yaml", uri="u", length=len(data)))
    (record,) = store.list()
    platform.finish_job(record.run_id)
    user_function("register")(grid_event(load_event("run_completed_pascal", RUN_ID=record.run_id)))
    registered = store.get(record.run_id)
    assert registered.state == RunState.REGISTERED
    model_raw = load_event(
        "model_registered_camel",
        RUN_ID=record.run_id,
        MODEL_NAME=registered.model_name,
        MODEL_VERSION=registered.model_version,
    )
    # The register function ignores model events; the deploy function acts on them.
    user_function("register")(grid_event(model_raw))
    assert store.get(record.run_id).state == RunState.REGISTERED
    user_function("deploy")(grid_event(model_raw))
    assert store.get(record.run_id).state == RunState.DEPLOYING
    platform.complete_deployments()
    user_function("reconcile")(TimerRequest(past_due=True))
    assert store.get(record.run_id).state == RunState.DEPLOYED
    user_function("cleanup")(TimerRequest())
    assert store.get(record.run_id).state == RunState.DEPLOYED  # not idle yet


def test_malformed_event_is_logged_not_raised(wired, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    raw = load_event("run_completed_pascal", RUN_ID="x")
    del raw["data"]["RunId"]
    with caplog.at_level(logging.WARNING):
        user_function("register")(grid_event(raw))
    assert "dropped" in caplog.text and "runId" in caplog.text


def queue_message(body: str) -> func.QueueMessage:
    from azure.functions.queue import QueueMessage

    return QueueMessage(id="m1", body=body.encode(), dequeue_count=1)


def test_queue_trigger_runs_the_follow_up_and_drops_what_is_not_one(  # type: ignore[no-untyped-def]
    wired, caplog: pytest.LogCaptureFixture
) -> None:
    from shared.followups import FollowUp, FollowUpKind
    from shared.services.followup import watch_of
    from tests.fakes import InMemoryFollowUps

    store, platform, _ = wired
    follow_ups = InMemoryFollowUps(store.clock)
    from shared import runtime

    runtime.install(runtime.bootstrap(runtime.settings(), store=store, platform=platform, follow_ups=follow_ups))
    user_function("submit")(InputStream(name="training-configs/phi3.yaml", data=config_bytes()))
    record = store.list()[0]
    platform.finish_job(record.run_id)
    check = FollowUp(record.run_id, FollowUpKind.RUN, watch_of(record))
    with caplog.at_level(logging.INFO):
        user_function("followup")(queue_message(check.to_json()))
        user_function("followup")(queue_message("{not a follow-up"))
    assert store.get(record.run_id).state == RunState.DEPLOYING  # the job ended; registered and deploying
    assert "dropped: message is not JSON" in caplog.text
