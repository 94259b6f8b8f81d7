"""Loose event bodies are malformed events (issue 22, finding 6): a NaN or Infinity anywhere (JSON has neither)
and a ``topic`` that is not text. ``shared.events.parse_event`` is the boundary: the Event Grid functions drop
such an event with a log line (a Python trigger cannot answer 400; returning keeps Event Grid from retrying what
cannot succeed), and the local host's webhook answers 400, as for every other malformed event."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from starlette.testclient import TestClient

from local.host.webhook import WEBHOOK_PATH, build_webhook_app
from shared.events import EventError, parse_event
from tests.eventdata import load_event
from tests.fakes import FakePlatform, make_store
from tests.functional.shared.test_functions import FUNCTIONS, grid_event, user_function

KEY = "loose-bodies-key"


def completed(**envelope: Any) -> dict[str, Any]:
    raw = load_event("run_completed_pascal", RUN_ID="phi3-1a2b3c4d")
    raw.update(envelope)
    return raw


NAN_IN_DATA = json.dumps([completed()]).replace('"RunId":', '"Score": NaN, "RunId":', 1)
INFINITY_IN_TAGS = json.dumps([completed()]).replace('"RunTags": {', '"RunTags": {"weight": -Infinity, ', 1)
NAN_TOPIC = json.dumps([completed()]).replace(json.dumps(completed()["topic"]), "NaN", 1)
NUMBER_TOPIC = json.dumps([completed(topic=5)])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (NAN_IN_DATA, "event.data.Score is nan, which is not a JSON number"),
        (INFINITY_IN_TAGS, "is -inf, which is not a JSON number"),
        (NAN_TOPIC, "event.topic is nan"),
        (NUMBER_TOPIC, "topic must be text, not int"),
    ],
)
def test_the_parser_refuses_them(body: str, reason: str) -> None:
    [raw] = json.loads(body)  # Python's json reads NaN and Infinity; the parser must not let them through
    with pytest.raises(EventError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_event(raw)


def test_a_missing_topic_is_still_an_event() -> None:
    raw = completed()
    del raw["topic"]
    assert parse_event(raw).topic == ""


@pytest.mark.parametrize("body", [NAN_IN_DATA, INFINITY_IN_TAGS, NUMBER_TOPIC], ids=["nan", "infinity", "topic"])
def test_the_event_grid_function_drops_them_with_a_reason(
    body: str, use_runtime: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store, _, _ = make_store()
    use_runtime(store=store, platform=FakePlatform(store.clock))
    [raw] = json.loads(body)
    event = grid_event(raw)
    with caplog.at_level(logging.INFO):
        user_function("register")(event)
    assert "dropped" in caplog.text
    assert "not a JSON number" in caplog.text or "must be text" in caplog.text


def post(body: str) -> Any:
    app = build_webhook_app({"register": FUNCTIONS["register"]}, KEY)
    client = TestClient(app, raise_server_exceptions=False)
    headers = {"aeg-event-type": "Notification", "content-type": "application/json", "x-functions-key": KEY}
    return client.post(WEBHOOK_PATH, params={"functionName": "register"}, headers=headers, content=body.encode())


@pytest.mark.parametrize("body", [NAN_IN_DATA, INFINITY_IN_TAGS], ids=["nan", "infinity"])
def test_the_local_hosts_webhook_answers_400(body: str) -> None:
    response = post(body)
    assert response.status_code == 400
    assert "not a JSON number" in response.json()["error"]


@pytest.mark.parametrize("body", [NUMBER_TOPIC, NAN_TOPIC], ids=["number", "nan"])
def test_the_local_hosts_webhook_answers_400_for_a_topic_that_is_not_text(body: str) -> None:
    assert post(body).status_code == 400
