"""Events the local platform posts: Event Grid wire schema, parsed by the app's own wrappers, delivered with retries."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from local.platform import eventpost
from shared.events import ModelRegisteredEvent, RunEvent, parse_event
from shared.naming import app_tags

TAGS = app_tags("demo-1234abcd", "demo.yaml")
KEY = "webhook-key-for-tests"


def test_run_status_changed_wire_schema_parses_as_the_app_expects() -> None:
    event = eventpost.run_event(
        eventpost.RUN_STATUS_CHANGED,
        job_name="demo-1234abcd",
        experiment_id="3",
        experiment_name="exp",
        tags=TAGS,
        status="Failed",
    )
    wire = eventpost.to_wire(event)
    assert set(wire) == {"id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion", "metadataVersion"}
    assert wire["eventType"] == "Microsoft.MachineLearningServices.RunStatusChanged"
    assert wire["subject"] == "experiments/3/runs/demo-1234abcd"
    assert wire["topic"] == eventpost.LOCAL_TOPIC
    assert wire["metadataVersion"] == "1" and wire["dataVersion"] == "2"
    json.dumps(wire)  # JSON-ready as is
    parsed = parse_event(wire)
    assert isinstance(parsed, RunEvent)
    assert parsed.run_id == "demo-1234abcd" and parsed.run_status == "Failed"
    assert parsed.run_tags == TAGS and not parsed.is_child_run
    assert parsed.experiment_name == "exp"


def test_run_completed_has_no_status_and_means_completed() -> None:
    wire = eventpost.to_wire(
        eventpost.run_event(eventpost.RUN_COMPLETED, job_name="j", experiment_id="1", experiment_name="e", tags=TAGS)
    )
    assert "runStatus" not in wire["data"]
    parsed = parse_event(wire)
    assert isinstance(parsed, RunEvent) and parsed.run_status == "Completed"
    assert parsed.run_type == "azureml.PipelineRun"


def test_model_registered_wire_schema() -> None:
    wire = eventpost.to_wire(eventpost.model_registered_event("m", "3", TAGS))
    assert wire["subject"] == "models/m:3"
    parsed = parse_event(wire)
    assert isinstance(parsed, ModelRegisteredEvent)
    assert (parsed.model_name, parsed.model_version, parsed.model_tags) == ("m", "3", TAGS)


def test_function_url_keeps_existing_query() -> None:
    assert eventpost.function_url("http://h/x", "register") == "http://h/x?functionName=register"
    assert eventpost.function_url("http://h/x?a=1", "deploy") == "http://h/x?a=1&functionName=deploy"


class Webhook:
    """A loopback webhook answering the queued status codes, then 200; records what it received."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/runtime/webhooks/EventGrid"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook(request: pytest.FixtureRequest) -> Iterator[Webhook]:
    hook = Webhook(getattr(request, "param", []))
    yield hook
    hook.server.shutdown()


def _event() -> Any:
    return eventpost.run_event(eventpost.RUN_COMPLETED, job_name="j", experiment_id="1", experiment_name="e", tags=TAGS)


@pytest.mark.parametrize("webhook", [[500, 503]], indirect=True)
def test_post_retries_until_accepted_and_never_logs_the_key(webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    delays: list[float] = []
    caplog.set_level(logging.DEBUG)
    assert eventpost.post_events(webhook.url, "register", KEY, [_event()], sleep=delays.append)
    assert delays == [2.0, 4.0]
    assert len(webhook.received) == 3
    last = webhook.received[-1]
    assert last["path"].endswith("?functionName=register")
    headers = {k.lower(): v for k, v in last["headers"].items()}
    assert headers["aeg-event-type"] == "Notification"
    assert headers["x-functions-key"] == KEY
    assert isinstance(last["body"], list) and last["body"][0]["eventType"].endswith("RunCompleted")
    assert KEY not in caplog.text


@pytest.mark.parametrize("webhook", [[401]], indirect=True)
def test_post_does_not_retry_what_event_grid_would_not(webhook: Webhook) -> None:
    delays: list[float] = []
    assert not eventpost.post_events(webhook.url, "register", KEY, [_event()], sleep=delays.append)
    assert delays == [] and len(webhook.received) == 1


def test_post_gives_up_after_the_tries_when_nobody_listens() -> None:
    delays: list[float] = []
    # A port nothing listens on: every try fails to connect.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/runtime/webhooks/EventGrid?code=secret"
    assert not eventpost.post_events(url, "register", KEY, [_event()], tries=5, sleep=delays.append)
    assert delays == [2.0, 4.0, 8.0, 16.0]  # about 30 s in all, as Event Grid's first retries
