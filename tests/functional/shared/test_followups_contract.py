"""The follow-up port's contract (shared/followups.py), one suite on both implementations: ``InMemoryFollowUps``
(tests/fakes.py), which the service tests use, and ``QueueFollowUps`` on a real Azurite queue and table."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from shared.followups import FollowUp, FollowUpKind, FollowUps
from tests.fakes import FakeClock, InMemoryFollowUps

WATCH = "deploying@2026-11-01T12:00:00+00:00"
LATER_WATCH = "deployed@2026-11-01T12:09:00+00:00"


@dataclass(frozen=True)
class Backend:
    follow_ups: FollowUps
    visible: Callable[[], list[FollowUp]]  # the messages deliverable now, taken off the queue


def memory_backend() -> Backend:
    follow_ups = InMemoryFollowUps(FakeClock())
    return Backend(follow_ups, follow_ups.deliver_due)


def queue_backend(connection: str) -> Backend:
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy

    from shared.followups_queue import QueueFollowUps

    name = f"followups-{uuid.uuid4().hex[:12]}"
    follow_ups = QueueFollowUps(connection, name, f"marks{uuid.uuid4().hex[:12]}")
    follow_ups.queue  # noqa: B018 - creates the queue the reader below reads
    reader = QueueClient.from_connection_string(connection, name, message_decode_policy=TextBase64DecodePolicy())

    def visible() -> list[FollowUp]:
        found = []
        for message in reader.receive_messages(max_messages=32, visibility_timeout=30):
            found.append(FollowUp.from_json(message.content))
            reader.delete_message(message)
        return found

    return Backend(follow_ups, visible)


@pytest.fixture(params=[pytest.param("memory"), pytest.param("queue", marks=pytest.mark.azurite)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return memory_backend() if request.param == "memory" else queue_backend(request.getfixturevalue("azurite"))


def check(attempt: int = 0, watch: str = WATCH, kind: FollowUpKind = FollowUpKind.RUN) -> FollowUp:
    return FollowUp("phi3-0123abcd", kind, watch, attempt)


def test_a_check_with_no_delay_is_delivered_as_sent(backend: Backend) -> None:
    assert backend.follow_ups.schedule(check(), timedelta(0)) is True
    assert backend.visible() == [check()]
    assert backend.visible() == []  # taken once


def test_a_delayed_check_is_not_delivered_before_its_time(backend: Backend) -> None:
    assert backend.follow_ups.schedule(check(), timedelta(minutes=10)) is True
    assert backend.visible() == []


def test_the_same_attempt_twice_is_sent_once(backend: Backend) -> None:
    assert backend.follow_ups.schedule(check(1), timedelta(0)) is True
    assert backend.follow_ups.schedule(check(1), timedelta(0)) is False
    assert backend.visible() == [check(1)]


def test_an_earlier_attempt_after_a_later_one_is_not_sent(backend: Backend) -> None:
    assert backend.follow_ups.schedule(check(3), timedelta(0)) is True
    assert backend.follow_ups.schedule(check(2), timedelta(0)) is False
    assert backend.follow_ups.schedule(check(4), timedelta(0)) is True
    assert sorted(f.attempt for f in backend.visible()) == [3, 4]


def test_a_new_watch_starts_again_at_attempt_zero_and_the_old_one_is_stale(backend: Backend) -> None:
    assert backend.follow_ups.schedule(check(5), timedelta(0)) is True
    assert backend.follow_ups.schedule(check(0, LATER_WATCH), timedelta(0)) is True
    assert backend.follow_ups.schedule(check(6), timedelta(0)) is False  # the run has left that watch
    assert [f.watch for f in backend.visible()] == [WATCH, LATER_WATCH]


def test_kinds_of_one_run_are_marked_apart(backend: Backend) -> None:
    assert backend.follow_ups.schedule(check(0, LATER_WATCH, FollowUpKind.RUN), timedelta(0)) is True
    assert backend.follow_ups.schedule(check(0, LATER_WATCH, FollowUpKind.ENDPOINT), timedelta(0)) is True
    assert {f.kind for f in backend.visible()} == {FollowUpKind.RUN, FollowUpKind.ENDPOINT}
