from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest
from starlette.testclient import TestClient

from local.common.exceptions import HostConfigError
from local.host.discovery import discover
from local.host.webhook import MAX_BODY_BYTES, WEBHOOK_PATH, build_webhook_app

KEY = "k3y-for-tests"


class Recorder:
    def __init__(self) -> None:
        self.events: list[func.EventGridEvent] = []


def build_test_app(recorder: Recorder) -> func.FunctionApp:
    """A FunctionApp made here: the host must serve any app, not only the project's."""
    app = func.FunctionApp()

    @app.function_name("record")
    @app.event_grid_trigger(arg_name="event")
    def record(event: func.EventGridEvent) -> None:
        recorder.events.append(event)

    @app.function_name("explode")
    @app.event_grid_trigger(arg_name="evt")
    def explode(evt: func.EventGridEvent) -> None:
        raise RuntimeError("handler failed")

    @app.function_name("tick")
    @app.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False)
    def tick(timer: func.TimerRequest) -> None:
        raise AssertionError("a timer must not be reachable through the webhook")

    return app


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(recorder: Recorder) -> TestClient:
    functions = discover(build_test_app(recorder))
    return TestClient(build_webhook_app(functions.event_grid, KEY), raise_server_exceptions=False)


def event(event_id: str = "e1", **overrides: Any) -> dict[str, Any]:
    body = {
        "id": event_id,
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
        "subject": "experiments/x/runs/run-1",
        "eventType": "Microsoft.MachineLearningServices.RunCompleted",
        "eventTime": "2026-03-10T10:00:00.1234567Z",
        "data": {"runId": "run-1", "runTags": {"autopilot_run_id": "run-1"}},
        "dataVersion": "2",
    }
    body.update(overrides)
    return body


def _managed(run_id: str) -> dict[str, str]:
    return {"autopilot_managed": "true", "autopilot_run_id": run_id}


def post(
    client: TestClient,
    body: Any,
    function: str = "record",
    kind: str | None = "Notification",
    key: str | None = KEY,
    via_header: bool = False,
) -> Any:
    params = {"functionName": function}
    headers = {"content-type": "application/json"}
    if kind is not None:
        headers["aeg-event-type"] = kind
    if key is not None:
        if via_header:
            headers["x-functions-key"] = key
        else:
            params["code"] = key
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(WEBHOOK_PATH, params=params, headers=headers, content=content)


def test_a_single_event_object_reaches_the_function_as_an_event_grid_event(
    client: TestClient, recorder: Recorder
) -> None:
    response = post(client, event("e1"))
    assert response.status_code == 200
    [got] = recorder.events
    assert isinstance(got, func.EventGridEvent)
    assert got.id == "e1"
    assert got.event_type == "Microsoft.MachineLearningServices.RunCompleted"
    assert got.subject == "experiments/x/runs/run-1"
    assert got.topic.endswith("/workspaces/ws")
    assert got.get_json() == {"runId": "run-1", "runTags": {"autopilot_run_id": "run-1"}}
    assert got.data_version == "2"
    # Seven fractional digits, as Event Grid writes them, parse to microseconds.
    assert got.event_time == datetime(2026, 3, 10, 10, 0, 0, 123456, tzinfo=UTC)


def test_an_array_delivers_every_event_in_order(client: TestClient, recorder: Recorder) -> None:
    response = post(client, [event("a"), event("b"), event("c")], via_header=True)
    assert response.status_code == 200
    assert [e.id for e in recorder.events] == ["a", "b", "c"]


@pytest.mark.parametrize("key", [None, "", "wrong", KEY + "x"])
def test_a_call_without_the_right_key_is_401_and_reaches_nothing(
    client: TestClient, recorder: Recorder, key: str | None
) -> None:
    response = post(client, [event()], key=key)
    assert response.status_code == 401
    assert "key" in response.json()["error"]
    assert recorder.events == []


def test_the_key_is_checked_before_anything_else(client: TestClient) -> None:
    # Without the key, even an unknown function or a bad body gets 401: nothing leaks to strangers.
    assert post(client, b"{not json", function="nope", key="bad").status_code == 401


@pytest.mark.parametrize(
    ("body", "kind", "function", "reason"),
    [
        (b"{not json", "Notification", "record", "not valid JSON"),
        (b"\xff\xfe", "Notification", "record", "not valid JSON"),
        ([], "Notification", "record", "JSON array of events"),
        ([1, 2], "Notification", "record", "JSON array of events"),
        ("text", "Notification", "record", "JSON array of events"),
        ([event()], None, "record", "aeg-event-type"),
        ([event()], "Bogus", "record", "aeg-event-type"),
        ([event()], "Notification", "missing", "'missing' is not an Event Grid function"),
        ([event()], "Notification", "tick", "'tick' is not an Event Grid function"),
        ([event()], "Notification", "", "is not an Event Grid function"),
        ([{"id": "x"}], "Notification", "record", "missing field(s) eventType, subject, eventTime"),
        ([event(), event(eventType=None)], "Notification", "record", "event [1]: missing field(s) eventType"),
        ([event(id=7)], "Notification", "record", "id must be a non-empty string"),
        ([event(eventTime="yesterday")], "Notification", "record", "eventTime must be an ISO 8601 time"),
        (b"[" * 100_000 + b"]" * 100_000, "Notification", "record", "deeper than 64 levels"),
        ([event(data={"runId": "j", "runTags": _managed("a/b")})], "Notification", "record", "is not a run id"),
        ([event(data={"runId": "j", "runTags": _managed("../x")})], "Notification", "record", "is not a run id"),
        ([event(data={"runId": "j", "runTags": _managed("x?y#z")})], "Notification", "record", "is not a run id"),
    ],
)
def test_bad_requests_are_400_with_a_reason_and_reach_nothing(
    client: TestClient, recorder: Recorder, body: Any, kind: str | None, function: str, reason: str
) -> None:
    response = post(client, body, function=function, kind=kind)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert recorder.events == []


def test_an_oversized_body_is_refused(client: TestClient, recorder: Recorder) -> None:
    response = post(client, b"[" + b" " * MAX_BODY_BYTES + b"]")
    assert response.status_code == 413
    assert recorder.events == []


def test_subscription_validation_is_answered_without_calling_the_function(
    client: TestClient, recorder: Recorder
) -> None:
    handshake = event(
        eventType="Microsoft.EventGrid.SubscriptionValidationEvent",
        data={"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "validationUrl": None},
    )
    response = post(client, [handshake], kind="SubscriptionValidation")
    assert response.status_code == 200
    assert response.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert recorder.events == []
    bad = post(client, [event(data={})], kind="SubscriptionValidation")
    assert bad.status_code == 400
    assert "validationCode" in bad.json()["error"]


def test_a_function_that_raises_gets_500_so_the_sender_retries(client: TestClient) -> None:
    response = post(client, [event("boom-1")], function="explode")
    assert response.status_code == 500
    assert "boom-1" in response.json()["error"]
    assert "Traceback" not in response.text


def test_host_status_answers_running(client: TestClient) -> None:
    response = client.get("/admin/host/status")
    assert response.status_code == 200
    assert response.json() == {"state": "Running"}
    assert client.get("/nowhere").status_code == 404


def test_the_key_never_reaches_the_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    post(client, [event()])
    post(client, [event()], function="explode")
    post(client, [event()], key="wrong-" + KEY)
    # The test's own HTTP client logs the URLs it calls; everything on the server side must not.
    server_side = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any("explode" in m for m in server_side)
    assert not any(KEY in m for m in server_side)


def test_an_empty_key_refuses_to_build_the_webhook(recorder: Recorder) -> None:
    functions = discover(build_test_app(recorder))
    with pytest.raises(HostConfigError, match="AUTOPILOT_WEBHOOK_KEY is empty"):
        build_webhook_app(functions.event_grid, "")
