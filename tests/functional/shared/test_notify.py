"""Durable notifications to a real HTTP receiver on loopback (issue 22, What to build 1): a state change records
what it owes and sends nothing; the delivery worker sends it, signed as Standard Webhooks (checked with the stock
``standardwebhooks`` verifier), in order per run, with backoff over hours, recording each attempt; a receiver
that is down for hours gets every event once it is back; a redirect is a failed try that goes nowhere; private
addresses are refused at submit and at send; two workers at once send once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from autopilot.runs import notification_lines
from shared.config.model import NotifyEvent
from shared.notify import EVENTS, MAX_TRIES, RETRY_AFTER, WebhookSender
from shared.notify_signing import receiver_secret
from shared.services import delivery
from shared.services.delivery import LEASE
from shared.states import RunState
from tests.configs import CONFIG, config_bytes
from tests.functional.shared.receiver import Receiver
from tests.functional.shared.world import World

KEY = "notify-test-signing-key"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    if r.hold is not None:
        r.hold.set()
    r.stop()


def world_notifying(receiver: Receiver, **notify: Any) -> tuple[World, bytes]:
    world = World(senders={"webhook": WebhookSender(KEY, allow_private=True)})
    config = config_bytes(notify={"webhooks": [receiver.url], **notify})
    return world, config


def deployed_run(world: World, config: bytes) -> str:
    record = world.drop(config)
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    assert world.state(record.run_id) == RunState.DEPLOYED
    return record.run_id


def test_a_state_change_sends_nothing_and_the_worker_sends_each_event_once_signed(receiver: Receiver) -> None:
    world, config = world_notifying(receiver)
    run = deployed_run(world, config)
    assert receiver.received == []  # owed, not sent: no receiver can hold up a state change
    world.deliver()
    world.deliver()  # nothing more is owed
    assert [n["type"] for n in receiver.delivered()] == ["autopilot.run.completed", "autopilot.run.deployed"]
    verifier = Webhook(receiver_secret(KEY))  # the stock Standard Webhooks verifier
    for got in receiver.received:
        body = verifier.verify(got["body"], got["headers"])
        assert got["headers"]["webhook-id"] == body["id"] == f"{run}:{body['type'].rsplit('.', 1)[1]}"
        assert KEY not in got["body"].decode() and "token=abc" not in got["body"].decode()
        assert not {h.lower() for h in got["headers"]} & {"x-autopilot-signature", "x-autopilot-delivery"}
    deployed = receiver.delivered()[-1]
    assert deployed["endpoint"]["name"] and deployed["run_id"] == run and deployed["state"] == "deployed"
    assert receiver.delivered()[0]["state"] == "completed"  # the body as it was when the event happened


def test_a_replay_older_than_the_tolerance_is_refused_by_the_stock_verifier(receiver: Receiver) -> None:
    # A delivery captured ten minutes ago (its webhook-timestamp then), replayed now.
    world = World(senders={"webhook": WebhookSender(KEY, allow_private=True, clock=lambda: time.time() - 600)})
    world.drop(config_bytes(training={"learning_rate": -1}, notify={"webhooks": [receiver.url]}), name="bad.yaml")
    world.deliver()
    (captured,) = receiver.received
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(receiver_secret(KEY)).verify(captured["body"], captured["headers"])
    # A forged body under the captured signature is refused too.
    forged = dict(captured["headers"], **{"webhook-timestamp": str(int(time.time()))})
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver_secret(KEY)).verify(captured["body"], forged)


def test_a_receiver_down_for_hours_gets_every_event_once_in_order(receiver: Receiver) -> None:
    world, config = world_notifying(receiver)
    receiver.stop()  # down: connections refused
    run = deployed_run(world, config)
    # The worker's timer, every minute for four hours; the receiver is back after two.
    for minute in range(240):
        if minute == 120:
            receiver.start()
        world.deliver()
        world.clock.advance(minutes=1)
    assert [n["type"] for n in receiver.delivered()] == ["autopilot.run.completed", "autopilot.run.deployed"]
    assert len(receiver.received) == 2  # each once: nothing was sent while it was down, nothing twice after
    record = world.store.get(run)
    assert record is not None and not record.outbox.owing
    completed, deployed = (e.deliveries[0] for e in record.outbox.events)
    assert completed.state == deployed.state == "delivered"
    # Tried on the schedule while down (30 s, 2 min, 10 min, 30 min, 1 h, ...), then delivered at the first try
    # after it came back; the later event waited for the earlier one (one try, once its turn came).
    waits = [
        round((b.at - a.at).total_seconds()) for a, b in zip(completed.attempts, completed.attempts[1:], strict=False)
    ]
    assert completed.tries == 7 and waits == [1800, 3600, 7200]  # the last attempts kept: 4 of 7
    assert completed.attempts[-1].outcome == "HTTP 204" and completed.attempts[0].outcome == "ConnectionRefusedError"
    assert deployed.tries == 1 and deployed.attempts[0].at >= completed.settled_at  # type: ignore[operator]


def test_a_delivery_that_never_succeeds_is_given_up_after_a_day_with_the_reason(receiver: Receiver) -> None:
    world, _ = world_notifying(receiver)
    receiver.answers = [503] * 100
    world.drop(config_bytes(training={"learning_rate": -1}, notify={"webhooks": [receiver.url]}), name="bad.yaml")
    for _ in range(MAX_TRIES + 2):
        world.deliver()
        world.clock.advance(hours=5)
    (record,) = world.store.list()
    (d,) = record.outbox.events[0].deliveries
    assert len(receiver.received) == d.tries == MAX_TRIES
    assert d.state == "failed" and d.reason is not None and d.reason.startswith(f"gave up after {MAX_TRIES} tries")
    assert sum(RETRY_AFTER, timedelta()) < timedelta(hours=24)


def test_a_redirect_is_a_failed_try_and_nothing_goes_to_the_location(receiver: Receiver) -> None:
    elsewhere = Receiver(path="/collect")
    try:
        world, _ = world_notifying(receiver)
        receiver.answers = [302]
        receiver.location = elsewhere.url
        world.drop(config_bytes(training={"learning_rate": -1}, notify={"webhooks": [receiver.url]}), name="r.yaml")
        world.deliver()
        assert elsewhere.received == []  # neither the POST nor a GET went on to the Location
        (record,) = world.store.list()
        (d,) = record.outbox.events[0].deliveries
        assert d.state == "owed" and d.attempts[-1].outcome == "HTTP 302 (redirects are not followed)"
        assert d.attempts[-1].next_at is not None  # tried again later, at the same URL
    finally:
        elsewhere.stop()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:{port}/hook", "a loopback address"),
        ("http://localhost:{port}/hook", "a loopback address"),
        ("https://169.254.169.254/latest/meta-data", "the cloud metadata address"),
        ("https://[fd00:ec2::254]/latest", "the cloud metadata address"),
        ("https://10.1.2.3/hook", "a private address"),
        ("https://[fe80::1]/hook", "a link-local address"),
    ],
)
def test_private_addresses_are_refused_at_submit(receiver: Receiver, url: str, why: str) -> None:
    world = World(notify_allow_private=False)
    port = receiver.url.split(":")[2].split("/")[0]
    record = world.drop(config_bytes(notify={"webhooks": [url.format(port=port)]}), name="p.yaml")
    assert record is not None and record.state == RunState.REJECTED
    (issue,) = [i for i in record.errors if i.path.startswith("notify")]
    assert issue.path == "notify.webhooks[0]" and why in issue.message
    assert "AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES" in issue.message
    world.deliver()
    assert receiver.received == []


def test_a_name_that_resolves_to_a_private_address_at_send_time_is_refused_and_not_retried(
    receiver: Receiver,
) -> None:
    # DNS rebinding: public when the config was submitted, loopback when the notification is sent.
    port = int(receiver.url.split(":")[2].split("/")[0])
    answers = {"hooks.example.com": ["203.0.113.7"]}
    sender = WebhookSender(KEY, allow_private=False, resolver=lambda host, _port: answers[host])
    world = World(senders={"webhook": sender}, notify_allow_private=False)
    url = f"https://hooks.example.com:{port}/hook"
    record = world.drop(config_bytes(training={"learning_rate": -1}, notify={"webhooks": [url]}), name="dns.yaml")
    assert record is not None and record.state == RunState.REJECTED  # the learning rate; the URL passed
    answers["hooks.example.com"] = ["127.0.0.1"]
    world.deliver()
    world.clock.advance(hours=1)
    world.deliver()
    assert receiver.received == []
    stored = world.store.get(record.run_id)
    assert stored is not None
    (d,) = stored.outbox.events[0].deliveries
    assert d.state == "failed" and d.tries == 1
    assert d.reason == (
        "refused: hooks.example.com resolves to 127.0.0.1, a loopback address: the app sends notifications to "
        "public addresses only (AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES)"
    )


def test_two_workers_at_once_send_once(receiver: Receiver) -> None:
    world, _ = world_notifying(receiver)
    world.drop(config_bytes(training={"learning_rate": -1}, notify={"webhooks": [receiver.url]}), name="w.yaml")
    (before,) = world.store.list()  # what a second worker read before the first took the delivery
    receiver.hold = threading.Event()
    first = threading.Thread(target=world.deliver)
    first.start()
    assert receiver.arrived.wait(30)  # the first worker is sending
    assert world.deliver().sent == []  # the second finds the lease and sends nothing
    event = before.outbox.events[0]
    assert delivery._claim(world.store, before, event.id, "webhook:0", "late") is None  # its stale claim loses
    receiver.hold.set()
    first.join(30)
    world.clock.advance(minutes=10)
    world.deliver()
    assert len(receiver.received) == 1 and len(receiver.delivered()) == 1


class WorkerDied(BaseException):
    pass


def test_a_worker_that_dies_while_sending_is_taken_over_once_its_lease_runs_out(receiver: Receiver) -> None:
    world, _ = world_notifying(receiver)
    real = world.senders["webhook"]

    def dies(*args: Any) -> Any:
        raise WorkerDied

    world.senders["webhook"] = dies
    world.drop(config_bytes(training={"learning_rate": -1}, notify={"webhooks": [receiver.url]}), name="d.yaml")
    with pytest.raises(WorkerDied):
        world.deliver()
    world.senders["webhook"] = real
    world.deliver()
    assert receiver.received == []  # its lease still holds
    world.clock.advance(seconds=LEASE.total_seconds() + 1)
    world.deliver()
    (record,) = world.store.list()
    (d,) = record.outbox.events[0].deliveries
    assert len(receiver.delivered()) == 1 and d.state == "delivered" and d.tries == 2
    assert [a.outcome for a in d.attempts] == ["no outcome recorded (the worker stopped while sending)", "HTTP 204"]


def test_status_shows_each_delivery_and_its_attempts(receiver: Receiver) -> None:
    world, _ = world_notifying(receiver)
    receiver.answers = [503]
    world.drop(config_bytes(training={"learning_rate": -1}, notify={"webhooks": [receiver.url]}), name="s.yaml")
    world.deliver()
    world.clock.advance(seconds=30)
    world.deliver()
    (record,) = world.store.list()
    document = world.status.read("_runs/" + record.run_id + ".json")
    assert document is not None
    (shown,) = document["notifications"]
    (d,) = shown["deliveries"]
    assert shown["id"] == f"{record.run_id}:rejected" and d["state"] == "delivered" and d["tries"] == 2
    assert [(a["outcome"], a.get("status")) for a in d["attempts"]] == [("HTTP 503", 503), ("HTTP 204", 204)]
    assert d["attempts"][0]["next_at"] and "token=abc" not in json.dumps(document)
    assert "/hooks/autopilot" not in json.dumps(document)  # a webhook's path can be its secret too
    assert d["target"] == receiver.url.split("/hooks")[0] + " (webhook 1)"
    lines = notification_lines(record)
    assert lines[0].startswith("  notification rejected to http://127.0.0.1:") and "delivered after 2 tries" in lines[0]
    assert "HTTP 503" in lines[1] and "HTTP 204" in lines[2]


def test_rejections_and_approval_waits_are_owed_in_order(receiver: Receiver) -> None:
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
    world.deliver()
    types = sorted(n["type"] for n in receiver.delivered())
    assert types == ["autopilot.run.awaiting_approval", "autopilot.run.completed", "autopilot.run.rejected"]
    rejected = next(n for n in receiver.delivered() if n["type"] == "autopilot.run.rejected")
    assert rejected["error"]["messages"]
    mine = [n["type"] for n in receiver.delivered() if n["run_id"] == record.run_id]
    assert mine == ["autopilot.run.completed", "autopilot.run.awaiting_approval"]


def test_only_the_events_asked_for(receiver: Receiver) -> None:
    world, config = world_notifying(receiver, events=["deployed"])
    deployed_run(world, config)
    world.deliver()
    assert [n["type"] for n in receiver.delivered()] == ["autopilot.run.deployed"]


def test_a_refusal_is_not_retried(receiver: Receiver) -> None:
    world, config = world_notifying(receiver, events=["completed", "deployed"])
    receiver.answers = [400]  # completed: refused; deployed goes on after it
    run = deployed_run(world, config)
    world.deliver()
    world.clock.advance(hours=1)
    world.deliver()
    assert [r["answered"] for r in receiver.received] == [400, 204]
    record = world.store.get(run)
    assert record is not None
    assert record.outbox.events[0].deliveries[0].reason == "HTTP 400 (refused by the receiver)"


def test_the_config_accepts_every_event_the_notifier_sends_and_only_safe_urls() -> None:
    assert set(EVENTS) == set(NotifyEvent.__args__)  # type: ignore[attr-defined]
    world = World()
    for url in ("http://example.com/hook", "ftp://127.0.0.1/x", "not a url"):
        record = world.drop(config_bytes(notify={"webhooks": [url]}), name=f"n{abs(hash(url))}.yaml")
        assert record is not None and record.state == RunState.REJECTED
        assert record.errors[0].path.startswith("notify.webhooks")
