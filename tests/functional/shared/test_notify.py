"""Notifications reach a real HTTP receiver on loopback: one signed POST per event the run goes through,
retried on 5xx, not on a refusal, never carrying a key; an unreachable receiver costs the run nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared.config.model import NotifyEvent
from shared.notify import EVENTS, ID_HEADER, SIGNATURE_HEADER, WebhookNotifier
from shared.states import RunState
from tests.configs import CONFIG, config_bytes
from tests.functional.shared.receiver import Receiver
from tests.functional.shared.world import World

KEY = "notify-test-signing-key"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def world_notifying(receiver: Receiver, **notify: Any) -> tuple[World, bytes]:
    world = World(observers=[WebhookNotifier(KEY, sleep=lambda _: None)])
    config = config_bytes(notify={"webhooks": [receiver.url], **notify})
    return world, config


def test_each_event_of_a_run_is_posted_once_and_signed(receiver: Receiver) -> None:
    world, config = world_notifying(receiver)
    record = world.drop(config)
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    assert world.state(record.run_id) == RunState.DEPLOYED
    assert [n["type"] for n in receiver.delivered()] == ["autopilot.run.completed", "autopilot.run.deployed"]
    for got in receiver.received:
        expected = "sha256=" + hmac.new(KEY.encode(), got["body"], hashlib.sha256).hexdigest()
        assert got["headers"][SIGNATURE_HEADER] == expected
        body = json.loads(got["body"])
        assert got["headers"][ID_HEADER] == body["id"] == f"{record.run_id}:{body['type'].rsplit('.', 1)[1]}"
        assert KEY not in got["body"].decode() and "token=abc" not in got["body"].decode()
    deployed = receiver.delivered()[-1]
    assert deployed["endpoint"]["name"] and deployed["run_id"] == record.run_id


def test_rejections_and_approval_waits_are_notified(receiver: Receiver) -> None:
    world, _ = world_notifying(receiver)
    bad = config_bytes(training={"learning_rate": -1}, notify={"webhooks": [receiver.url]})
    world.drop(bad, name="bad.yaml")
    manual = config_bytes(
        deployment={**CONFIG["deployment"], "approval": "manual"}, notify={"webhooks": [receiver.url]}
    )
    record = world.drop(manual)
    assert record is not None
    world.platform.finish_job(record.run_id)
    world.reconcile()
    types = [n["type"] for n in receiver.delivered()]
    assert types == ["autopilot.run.rejected", "autopilot.run.completed", "autopilot.run.awaiting_approval"]
    assert receiver.delivered()[0]["error"]["messages"]


def test_only_the_events_asked_for(receiver: Receiver) -> None:
    world, config = world_notifying(receiver, events=["deployed"])
    record = world.drop(config)
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    assert [n["type"] for n in receiver.delivered()] == ["autopilot.run.deployed"]


def test_server_errors_are_retried_and_refusals_are_not(receiver: Receiver) -> None:
    world, config = world_notifying(receiver, events=["completed", "deployed"])
    receiver.answers = [503, 500, 204, 400]  # completed: two failures then delivered; deployed: refused
    record = world.drop(config)
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    assert [r["answered"] for r in receiver.received] == [503, 500, 204, 400]
    assert [n["type"] for n in receiver.delivered()] == ["autopilot.run.completed"]
    assert world.state(record.run_id) == RunState.DEPLOYED  # a receiver's trouble is not the run's


def test_an_unreachable_receiver_does_not_stop_the_run() -> None:
    world = World(observers=[WebhookNotifier(KEY, sleep=lambda _: None)])
    record = world.drop(config_bytes(notify={"webhooks": ["http://127.0.0.1:9/nothing-listens-here"]}))
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    assert world.state(record.run_id) == RunState.DEPLOYED


def test_the_config_accepts_every_event_the_notifier_sends_and_only_safe_urls() -> None:
    assert set(EVENTS) == set(NotifyEvent.__args__)  # type: ignore[attr-defined]
    world = World()
    for url in ("http://example.com/hook", "ftp://127.0.0.1/x", "not a url"):
        record = world.drop(config_bytes(notify={"webhooks": [url]}), name=f"n{abs(hash(url))}.yaml")
        assert record is not None and record.state == RunState.REJECTED
        assert record.errors[0].path.startswith("notify.webhooks")
