"""``test.http`` fires what it says at routes the local host serves: a config blob at the submit function's
container on Azurite, app events at the Event Grid functions they are routed to, a validation handshake; each
with the shape the host accepts (the same checks the webhook makes), and a config that validates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

import function_app
from local.host.azurite import development_sas
from local.host.blobpoller import BlobPath
from local.host.discovery import discover
from local.host.webhook import WEBHOOK_PATH, check_app_event, to_event
from shared.config.loader import load_config
from shared.settings import AZURITE_CONNECTION_STRING, Settings
from shared.subscriptions import function_for
from tests.httpfile import HttpRequest, parse, read

ROOT = Path(__file__).resolve().parents[2]
KEY_SETTING = "AUTOPILOT_WEBHOOK_KEY"
SAS = development_sas()


def _env(name: str) -> str:
    return SAS if name == "AUTOPILOT_AZURITE_SAS" else f"<env {name}>"


REQUESTS = read(ROOT / "test.http", env=_env)
DEFAULTS = Settings.from_env({})
FUNCTIONS = discover(function_app.app)


def webhook_requests(kind: str) -> list[HttpRequest]:
    return [r for r in REQUESTS if r.path == WEBHOOK_PATH and r.headers.get("aeg-event-type") == kind]


def blob_endpoint() -> str:
    fields = dict(part.split("=", 1) for part in AZURITE_CONNECTION_STRING.split(";") if part)
    return fields["BlobEndpoint"].rstrip("/")


def test_the_file_holds_a_blob_event_app_events_and_a_handshake() -> None:
    assert [r.method for r in REQUESTS if r.url.startswith(blob_endpoint())] == ["PUT", "PUT"]
    functions = sorted(r.query["functionName"][0] for r in webhook_requests("Notification"))
    assert functions == ["deploy", "register"]
    assert len(webhook_requests("SubscriptionValidation")) == 1
    # Nothing else: every request goes to Azurite's blob service or to the host's webhook.
    assert all(r.url.startswith(blob_endpoint()) or r.path == WEBHOOK_PATH for r in REQUESTS)


def test_webhook_requests_reach_the_hosts_event_grid_functions_with_the_key() -> None:
    for request in [*webhook_requests("Notification"), *webhook_requests("SubscriptionValidation")]:
        assert request.method == "POST"
        assert request.origin == f"http://127.0.0.1:{DEFAULTS.host_port}"
        assert request.query["functionName"][0] in FUNCTIONS.event_grid
        assert request.headers["x-functions-key"] == f"<env {KEY_SETTING}>"
        assert request.headers["content-type"] == "application/json"


def test_the_events_pass_the_hosts_checks_and_are_routed_to_the_function_they_are_sent_to() -> None:
    for request in webhook_requests("Notification"):
        events = json.loads(request.body)
        assert isinstance(events, list) and events
        for raw in events:
            event = to_event(raw)  # the envelope, as the webhook reads it
            check_app_event(raw)  # the app's own parser: a tagged run id, no NaN, text topic
            assert function_for(event.event_type) == request.query["functionName"][0]


def test_the_handshake_carries_a_validation_code() -> None:
    [request] = webhook_requests("SubscriptionValidation")
    [event] = json.loads(request.body)
    assert event["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    assert isinstance(event["data"]["validationCode"], str) and event["data"]["validationCode"]


def test_the_config_blob_lands_where_submit_is_triggered_and_validates() -> None:
    [submit] = FUNCTIONS.blob
    trigger = BlobPath.parse(submit.name, str(submit.binding["path"]))
    [container, upload] = [r for r in REQUESTS if r.url.startswith(blob_endpoint())]
    assert container.path == f"/devstoreaccount1/{trigger.container}" and container.query["restype"] == ["container"]
    account, blob_container, blob_name = upload.path.lstrip("/").split("/", 2)
    assert account == "devstoreaccount1" and blob_container == trigger.container == DEFAULTS.config_container
    assert trigger.matches(blob_name)
    assert upload.headers["x-ms-blob-type"] == "BlockBlob"
    config = load_config(upload.body.encode("utf-8"))
    assert config.model.name == "tiny-random-chat"


def test_the_sas_creates_and_writes_and_has_not_expired() -> None:
    assert "sig=" not in (ROOT / "test.http").read_text(encoding="utf-8")  # made on demand, never stored
    for request in [r for r in REQUESTS if r.url.startswith(blob_endpoint())]:
        permissions, expiry = request.query["sp"][0], request.query["se"][0]
        assert set("cw") <= set(permissions)
        assert datetime.fromisoformat(expiry.replace("Z", "+00:00")) > datetime.now(UTC)


def test_the_reader_resolves_variables_and_refuses_an_undefined_one() -> None:
    text = '@a = http://x\n@b = {{a}}/p\n\n### one\nPOST {{b}}?k={{$processEnv K}} HTTP/1.1\nh: {{a}}\n\n{"x": 1}\n'
    [request] = parse(text, env=lambda name: name.lower())
    assert (request.url, request.headers, request.body) == ("http://x/p?k=k", {"h": "http://x"}, '{"x": 1}')
    with pytest.raises(ValueError, match="undefined variable"):
        parse("### one\nGET {{nope}}\n")
