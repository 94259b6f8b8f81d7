"""The follow-up message (its JSON and the errors that name the bad field), the backoff, and the setting."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.followups import MAX_DELAY, FollowUp, FollowUpError, FollowUpKind, capped
from shared.runtime import build_follow_ups
from shared.services.followup import backoff
from shared.settings import Settings
from shared.states import RunState


def test_a_follow_up_survives_its_json() -> None:
    check = FollowUp("phi3-0123abcd", FollowUpKind.ENDPOINT, "deployed@2026-11-01T12:00:00+00:00", 4)
    assert FollowUp.from_json(check.to_json()) == check
    assert check.next().attempt == 5


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("not json", "JSON"),
        ("[1]", "JSON object"),
        ('{"kind": "run", "watch": "w"}', "run_id"),
        ('{"run_id": "r", "kind": "run", "watch": ""}', "watch"),
        ('{"run_id": "r", "kind": "job", "watch": "w"}', "kind"),
        ('{"run_id": "r", "kind": "run", "watch": "w", "attempt": -1}', "attempt"),
        ('{"run_id": "r", "kind": "run", "watch": "w", "attempt": true}', "attempt"),
        ('{"run_id": "' + "r" * 5000 + '"}', "characters"),
    ],
)
def test_a_message_that_is_not_a_follow_up_is_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(FollowUpError, match=field):
        FollowUp.from_json(text)


def test_checks_back_off_from_15_seconds_doubling_to_the_states_cap() -> None:
    assert [backoff(RunState.CANARY, n).total_seconds() for n in range(5)] == [15, 30, 60, 60, 60]
    assert [backoff(RunState.DEPLOYING, n).total_seconds() for n in range(3)] == [15, 30, 30]
    assert backoff(RunState.RUNNING, 10) == timedelta(minutes=5)
    assert backoff(RunState.CANARY, 10_000) == timedelta(minutes=1)  # no overflow on a long chain


def test_a_delay_is_kept_within_what_the_queue_accepts() -> None:
    assert capped(timedelta(days=30)) == MAX_DELAY == timedelta(days=7)
    assert capped(timedelta(seconds=-5)) == timedelta(0)


def test_follow_ups_are_on_by_default_and_can_be_switched_off() -> None:
    assert Settings.from_env({}).follow_ups is True
    assert Settings.from_env({"AUTOPILOT_FOLLOW_UPS": "false"}).follow_ups is False


@pytest.mark.parametrize("name", ["Autopilot", "a", "a--b", "-ab", "x" * 57])
def test_a_queue_name_storage_refuses_is_refused_naming_the_setting(name: str) -> None:
    with pytest.raises(ValueError, match="AUTOPILOT_FOLLOW_UP_QUEUE"):
        build_follow_ups(Settings.from_env({"AUTOPILOT_FOLLOW_UP_QUEUE": name}))


def test_the_default_queue_name_is_one_storage_accepts() -> None:
    assert build_follow_ups(Settings.from_env({})) is not None


def test_the_composition_root_adds_the_scheduler_only_when_follow_ups_are_on() -> None:
    from shared import runtime
    from shared.services.followup import FollowUpScheduler

    def schedulers(env: dict[str, str]) -> int:
        store = runtime.bootstrap(Settings.from_env(env)).store  # builds no network client yet
        return sum(isinstance(o, FollowUpScheduler) for o in store.observers)

    assert schedulers({}) == 1
    assert schedulers({"AUTOPILOT_FOLLOW_UPS": "false"}) == 0
