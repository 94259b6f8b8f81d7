"""The local host's queue trigger against a real Azurite: visibility honoured, delete on success, a failing
message retried up to the dequeue count and then moved to ``<queue>-poison``; and the app's follow-ups sent by
``QueueFollowUps`` reach the app's queue function through it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from local.host.discovery import discover
from local.host.queuepoller import MAX_DEQUEUE_COUNT, QueuePoller
from shared.followups import FollowUp, FollowUpKind
from shared.followups_queue import QueueFollowUps

pytestmark = pytest.mark.azurite


def queue_app(queue: str, seen: list[dict[str, Any]], *, fail: bool = False) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.function_name("on_message")
    @app.queue_trigger(arg_name="message", queue_name=queue, connection="AzureWebJobsStorage")
    def on_message(message: func.QueueMessage) -> None:
        seen.append({"body": message.get_body(), "dequeue_count": message.dequeue_count})
        if fail:
            raise RuntimeError("cannot handle this message")

    return app


def sender(conn: str, queue: str) -> QueueClient:
    client = QueueClient.from_connection_string(conn, queue, message_encode_policy=TextBase64EncodePolicy())
    client.create_queue()
    return client


def poller_for(app: func.FunctionApp, conn: str) -> QueuePoller:
    # Retried at once, so the test needs no sleep (host.json waits 10 s between tries).
    return QueuePoller(discover(app).queue, lambda _: conn, {}, retry_visibility_s=0)


def test_a_message_is_handed_over_decoded_once_visible_and_deleted_on_success(azurite: str) -> None:
    queue = f"it-{uuid.uuid4().hex[:12]}"
    seen: list[dict[str, Any]] = []
    client = sender(azurite, queue)
    client.send_message('{"hello": 1}')
    client.send_message("later", visibility_timeout=600)
    poller = poller_for(queue_app(queue, seen), azurite)
    outcomes = poller.poll_once()
    assert [o.succeeded for o in outcomes] == [True]
    assert seen == [{"body": b'{"hello": 1}', "dequeue_count": 1}]
    assert poller.poll_once() == []  # deleted; the delayed one is not visible yet
    assert client.get_queue_properties().approximate_message_count == 1


def test_a_failing_message_is_retried_then_moved_to_the_poison_queue(azurite: str) -> None:
    queue = f"it-{uuid.uuid4().hex[:12]}"
    seen: list[dict[str, Any]] = []
    sender(azurite, queue).send_message("boom")
    poller = poller_for(queue_app(queue, seen, fail=True), azurite)
    for _ in range(MAX_DEQUEUE_COUNT + 2):
        poller.poll_once()
    assert [s["dequeue_count"] for s in seen] == list(range(1, MAX_DEQUEUE_COUNT + 1))
    poison = QueueClient.from_connection_string(
        azurite, f"{queue}-poison", message_decode_policy=TextBase64DecodePolicy()
    )
    assert [m.content for m in poison.receive_messages()] == ["boom"]
    assert QueueClient.from_connection_string(azurite, queue).get_queue_properties().approximate_message_count == 0


def test_a_follow_up_sent_by_the_app_reaches_its_queue_function(azurite: str) -> None:
    queue = f"it-{uuid.uuid4().hex[:12]}"
    seen: list[dict[str, Any]] = []
    check = FollowUp("phi3-0123abcd", FollowUpKind.RUN, "deploying@2026-11-01T12:00:00+00:00")
    follow_ups = QueueFollowUps(azurite, queue, f"marks{uuid.uuid4().hex[:12]}")
    assert follow_ups.schedule(check, timedelta(0))
    assert follow_ups.schedule(check.next(), timedelta(minutes=5))
    poller = poller_for(queue_app(queue, seen), azurite)
    poller.poll_once()
    assert [FollowUp.from_json(s["body"].decode()) for s in seen] == [check]
