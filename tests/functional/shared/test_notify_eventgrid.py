"""Event Grid notifications, published by the real azure-eventgrid client (topic key auth) to a topic stand-in
on loopback: CloudEvents 1.0 per the spec, one per event, stable id and time for dedupe, the key only in the
``aeg-sas-key`` header and only to the topic the settings allow, the webhooks' retries, and nothing a receiver
does stops the run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from shared.config.model import NotifySection
from shared.notify_eventgrid import EventGridSender, SdkPublisher, allowed_topics, cloud_event
from shared.states import RunState
from tests.configs import CONFIG, config_bytes
from tests.functional.shared.receiver import Receiver
from tests.functional.shared.world import World

TOPIC_KEY = "eventgrid-topic-test-key"
SOURCE = "/fine-tune-autopilot/training-configs"
# CloudEvents 1.0 (github.com/cloudevents/spec, cloudevents/spec.md): the REQUIRED context attributes, and
# the naming rule every attribute name follows (lower-case a-z and 0-9, at most 20 characters).
REQUIRED = ("id", "source", "specversion", "type")
ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")


@pytest.fixture
def topic() -> Iterator[Receiver]:
    r = Receiver(path="/api/events")
    yield r
    r.stop()


def world_publishing(topic: Receiver, **notify: Any) -> tuple[World, bytes, SdkPublisher]:
    """The app with ``topic`` as its one allowed topic (AUTOPILOT_EVENT_GRID_TOPICS) and its key, and a config
    naming it."""
    allowed = allowed_topics(topic.url)
    publisher = SdkPublisher(TOPIC_KEY, key_topic=topic.url)
    sender = EventGridSender(publisher, allowed, source=SOURCE)
    world = World(senders={"event_grid": sender}, event_grid_topics=allowed)
    return world, config_bytes(notify={"event_grid_topic": topic.url, **notify}), publisher


def events_of(topic: Receiver) -> list[dict[str, Any]]:
    """The CloudEvents the topic accepted (the client posts a batch: a JSON array)."""
    return [event for batch in topic.delivered() for event in batch]


def assert_cloudevents_1_0(event: dict[str, Any]) -> None:
    for name in REQUIRED:
        assert isinstance(event.get(name), str) and event[name], name
    assert event["specversion"] == "1.0"
    assert all(ATTRIBUTE_NAME.match(name) for name in event if name != "data"), sorted(event)
    assert event["source"].startswith("/")  # a URI-reference
    datetime.fromisoformat(event["time"].replace("Z", "+00:00"))  # RFC 3339
    assert event["datacontenttype"] == "application/json" and isinstance(event["data"], dict)


def test_each_event_is_one_cloudevent_on_the_topic(topic: Receiver) -> None:
    world, config, _ = world_publishing(topic)
    record = world.drop(config)
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    assert world.state(record.run_id) == RunState.DEPLOYED
    assert topic.received == []  # owed by the state changes, sent by the delivery worker
    world.deliver()

    events = events_of(topic)
    assert [e["type"] for e in events] == ["autopilot.run.completed", "autopilot.run.deployed"]
    for got, event in zip(topic.received, events, strict=True):
        assert_cloudevents_1_0(event)
        assert got["headers"]["Content-Type"].startswith("application/cloudevents-batch+json")
        assert got["headers"]["aeg-sas-key"] == TOPIC_KEY  # the key travels in its header only
        assert TOPIC_KEY not in got["body"].decode()
        assert event["id"] == f"{record.run_id}:{event['type'].rsplit('.', 1)[1]}"
        assert event["source"] == SOURCE and event["subject"] == "phi3.yaml"
    final = world.store.get(record.run_id)
    assert final is not None
    deployed = events[-1]
    # The data is the webhook body as it was then; the time is when the run entered the state, not when sent.
    assert deployed["data"] == final.outbox.events[-1].body and deployed["data"]["state"] == "deployed"
    assert all(d.state == "delivered" for e in final.outbox.events for d in e.deliveries)
    assert datetime.fromisoformat(deployed["time"].replace("Z", "+00:00")) == datetime.fromisoformat(
        final.timeline["deployed"]
    )


def test_a_redelivered_event_keeps_its_id_and_time_so_subscribers_can_drop_it(topic: Receiver) -> None:
    world, config, _publisher = world_publishing(topic, events=["deployed"])
    record = world.drop(config)
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    world.deliver()
    deployed = world.store.get(record.run_id)
    assert deployed is not None and deployed.state == RunState.DEPLOYED
    world.clock.advance(minutes=10)
    (owed,) = deployed.outbox.events
    world.senders["event_grid"](deployed, owed, owed.deliveries[0])  # again (at-least-once)
    first, again = events_of(topic)
    assert (first["id"], first["source"], first["time"]) == (again["id"], again["source"], again["time"])
    assert cloud_event(owed, "phi3.yaml", SOURCE)["id"] == first["id"] == f"{record.run_id}:deployed"


def test_the_rejection_of_a_bad_config_reaches_the_topic(topic: Receiver) -> None:
    world, _, _ = world_publishing(topic)
    bad = config_bytes(training={"learning_rate": -1}, notify={"event_grid_topic": topic.url})
    world.drop(bad, name="bad.yaml")
    world.deliver()
    (event,) = events_of(topic)
    assert event["type"] == "autopilot.run.rejected" and event["data"]["error"]["messages"]


def test_awaiting_approval_is_published_with_the_registration_time(topic: Receiver) -> None:
    world, _, _ = world_publishing(topic)
    manual = config_bytes(
        deployment={**CONFIG["deployment"], "approval": "manual"}, notify={"event_grid_topic": topic.url}
    )
    record = world.drop(manual)
    assert record is not None
    world.platform.finish_job(record.run_id)
    world.reconcile()
    world.deliver()
    events = events_of(topic)
    assert [e["type"] for e in events] == ["autopilot.run.completed", "autopilot.run.awaiting_approval"]
    registered = world.store.get(record.run_id)
    assert registered is not None
    assert datetime.fromisoformat(events[-1]["time"].replace("Z", "+00:00")) == datetime.fromisoformat(
        registered.timeline["registered"]
    )


def test_server_errors_are_retried_and_refusals_are_not(topic: Receiver) -> None:
    world, config, _ = world_publishing(topic, events=["completed", "deployed"])
    topic.answers = [503, 500, 200, 403]  # completed: two failures then accepted; deployed: refused
    record = world.drop(config)
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    seen = []
    for _ in range(3):  # the worker's timer, on the retry schedule: now, 30 s, 2 min later
        world.deliver()
        seen.append(len(topic.received))
        world.clock.advance(minutes=2)
    assert [r["answered"] for r in topic.received] == [503, 500, 200, 403]
    # One request per try: the client's own retries are off (the third tick delivers, then the next event).
    assert seen == [1, 2, 4]
    assert [e["type"] for e in events_of(topic)] == ["autopilot.run.completed"]
    assert world.state(record.run_id) == RunState.DEPLOYED


def test_an_unreachable_topic_does_not_stop_the_run() -> None:
    unreachable = "http://127.0.0.1:9/api/events"
    allowed = allowed_topics(unreachable)
    sender = EventGridSender(SdkPublisher(TOPIC_KEY, key_topic=unreachable), allowed)
    world = World(senders={"event_grid": sender}, event_grid_topics=allowed)
    record = world.drop(config_bytes(notify={"event_grid_topic": unreachable}))
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    world.deliver()
    assert world.state(record.run_id) == RunState.DEPLOYED
    stored = world.store.get(record.run_id)
    assert stored is not None
    assert stored.outbox.events[0].deliveries[0].attempts[-1].outcome == "ServiceRequestError"


def test_without_a_key_the_identity_is_asked_for_once_per_topic() -> None:
    asked: list[int] = []

    class Token:
        token, expires_on = "t", 2**40

    class Credential:
        def get_token(self, *scopes: str, **kwargs: Any) -> Token:
            return Token()

    def identity() -> Credential:
        asked.append(1)
        return Credential()

    publisher = SdkPublisher("", identity)
    # The client refuses a bearer token over plain http (azure-core's rule), which counts as no answer:
    # there is no https topic on loopback to show the identity path end to end.
    for _ in range(2):
        with pytest.raises(OSError, match="ServiceRequestError"):
            publisher("http://127.0.0.1:9/api/events", cloud_event_for_test())
    assert asked == [1]
    assert TOPIC_KEY not in repr(SdkPublisher(TOPIC_KEY))


def cloud_event_for_test() -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "r:completed",
        "source": SOURCE,
        "type": "autopilot.run.completed",
        "time": "2026-12-01T12:00:00+00:00",
        "datacontenttype": "application/json",
        "data": {},
    }


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/api/events",
        "ftp://127.0.0.1/api/events",
        "not a url",
        "https://user:secret@topic.westeurope-1.eventgrid.azure.net/api/events",
    ],
)
def test_the_config_refuses_an_unsafe_topic_url(url: str) -> None:
    world = World()
    record = world.drop(config_bytes(notify={"event_grid_topic": url}), name="t.yaml")
    assert record is not None and record.state == RunState.REJECTED
    assert record.errors[0].path == "notify.event_grid_topic"
    assert "secret" not in str(record.errors)


APP_TOPIC = "https://autopilot-runs.westeurope-1.eventgrid.azure.net/api/events"


def test_the_composition_root_publishes_with_the_settings_key_and_the_config_container() -> None:
    from shared.notify import WebhookSender, owe
    from shared.runtime import build_senders, build_store
    from shared.settings import Settings

    settings = Settings.from_env(
        {
            "AUTOPILOT_EVENT_GRID_TOPIC_KEY": TOPIC_KEY,
            "AUTOPILOT_EVENT_GRID_TOPICS": f" {APP_TOPIC.upper().replace('/API/EVENTS', '/api/events/')} ",
            "AUTOPILOT_CONFIG_CONTAINER": "team-configs",
        }
    )
    assert build_store(settings).owe is owe and build_store(settings).observers == ()  # state changes only owe
    senders = build_senders(settings)
    webhook, eventgrid = senders["webhook"], senders["event_grid"]
    assert isinstance(webhook, WebhookSender) and not webhook.allow_private
    assert isinstance(eventgrid, EventGridSender)
    assert eventgrid.source == "/fine-tune-autopilot/team-configs"
    assert eventgrid.allowed == {APP_TOPIC}  # compared without case, trailing slash or spaces
    assert isinstance(eventgrid.publish, SdkPublisher) and eventgrid.publish.key == TOPIC_KEY


@pytest.mark.parametrize("topics", ["", f"{APP_TOPIC},https://other.westeurope-1.eventgrid.azure.net/api/events"])
def test_a_topic_key_needs_exactly_the_one_topic_it_belongs_to(topics: str) -> None:
    from shared.settings import Settings

    with pytest.raises(ValueError, match="AUTOPILOT_EVENT_GRID_TOPICS") as exc:
        Settings.from_env({"AUTOPILOT_EVENT_GRID_TOPIC_KEY": TOPIC_KEY, "AUTOPILOT_EVENT_GRID_TOPICS": topics})
    assert TOPIC_KEY not in str(exc.value)


# Issue 22, finding 7: a config chose the URL and the app sent its topic key there as `aeg-sas-key`.
def test_a_config_chosen_topic_is_rejected_and_gets_nothing_on_the_wire(topic: Receiver) -> None:
    stranger = Receiver(path="/api/events")  # somebody's own server, named by a config
    try:
        world, _, _ = world_publishing(topic)  # the app allows `topic` and holds its key
        record = world.drop(config_bytes(notify={"event_grid_topic": stranger.url}), name="collect.yaml")
        assert record is not None and record.state == RunState.REJECTED
        (issue,) = record.errors
        assert issue.path == "notify.event_grid_topic"
        assert "not one of the topics this app publishes to" in issue.message
        assert stranger.received == []  # not even the rejection: no request, so no key
        assert topic.received == []
    finally:
        stranger.stop()


def test_a_recorded_run_naming_another_topic_publishes_nothing_there(topic: Receiver) -> None:
    """A run recorded before the allow list (its notify section names any topic) still sends the key nowhere."""
    stranger = Receiver(path="/api/events")
    try:
        world, config, publisher = world_publishing(topic)
        record = world.drop(config)
        assert record is not None
        world.finish_through_reconcile(record.run_id)
        deployed = world.store.get(record.run_id)
        assert deployed is not None and deployed.state == RunState.DEPLOYED
        deployed.notify = NotifySection(event_grid_topic=stranger.url)
        owed = deployed.outbox.events[-1]
        outcome = world.senders["event_grid"](deployed, owed, owed.deliveries[0])
        assert outcome.outcome == "refused: the topic is not in AUTOPILOT_EVENT_GRID_TOPICS" and not outcome.retry
        assert stranger.received == []
        # And the publisher alone, asked for another topic, does not hand it the key.
        with pytest.raises(OSError, match="no credential"):
            publisher(stranger.url, cloud_event_for_test())
        assert stranger.received == []
    finally:
        stranger.stop()


def test_without_an_allow_list_a_config_may_name_no_topic() -> None:
    world = World()
    url = "https://autopilot-runs.westeurope-1.eventgrid.azure.net/api/events"
    record = world.drop(config_bytes(notify={"event_grid_topic": url}), name="t.yaml")
    assert record is not None and record.state == RunState.REJECTED
    assert record.errors[0].path == "notify.event_grid_topic"
    assert "AUTOPILOT_EVENT_GRID_TOPICS is empty" in record.errors[0].message


def test_a_topic_that_redirects_gets_a_failed_try_and_the_location_gets_nothing(topic: Receiver) -> None:
    stranger = Receiver(path="/api/events")
    try:
        world, _, _ = world_publishing(topic, events=["rejected"])
        topic.answers = [307]
        topic.location = stranger.url
        world.drop(config_bytes(training={"learning_rate": -1}, notify={"event_grid_topic": topic.url}), name="r.yaml")
        world.deliver()
        assert stranger.received == []  # the client follows no redirect: neither the key nor the event went on
        (record,) = world.store.list()
        (d,) = record.outbox.events[0].deliveries
        assert d.state == "owed" and d.attempts[-1].outcome == "HTTP 307 (redirects are not followed)"
    finally:
        stranger.stop()
