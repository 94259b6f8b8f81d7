"""Follow-ups on the in-memory world: each check is the timers' own step for one run, scheduled by the state the
run entered; a lost message leaves the run to the timers, a duplicated or late one changes nothing, and a
deployment, a canary's window and an idle deadline end when due without a timer tick."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from shared.followups import FollowUp, FollowUpKind
from shared.ledger.record import RunRecord
from shared.services.cleanup import cleanup
from shared.services.followup import FollowUpScheduler, backoff, follow_up, watch_of
from shared.states import RunState
from tests.configs import CONFIG, config_bytes
from tests.fakes import InMemoryFollowUps
from tests.functional.shared.test_canary import ENDPOINT, line_config
from tests.functional.shared.world import TIMEOUT, World

IDLE_MINUTES = 30


class FollowUpWorld(World):
    """The world with the follow-up scheduler among the store's observers, and a log of every state entered."""

    def __init__(self) -> None:
        self.entered: list[tuple[str, RunState]] = []
        super().__init__(observers=[self._observe])
        self.follow_ups = InMemoryFollowUps(self.clock)
        self.scheduler = FollowUpScheduler(self.follow_ups, lambda: self.platform.activity_delay)
        self.outcomes: list[str] = []

    def _observe(self, record: RunRecord) -> None:
        self.entered.append((record.run_id, record.state))
        self.scheduler(record)

    def handle(self, message: FollowUp) -> str:
        outcome = follow_up(self.store, self.platform, self.follow_ups, message, deploy_timeout=TIMEOUT)
        self.outcomes.append(outcome)
        return outcome

    def deliver_due(self, copies: int = 1) -> list[FollowUp]:
        """The queue trigger: every message now due, each handled ``copies`` times (at-least-once delivery)."""
        due = self.follow_ups.deliver_due()
        for message in due:
            for _ in range(copies):
                self.handle(message)
        return due

    def run_follow_ups_until(
        self, done: Callable[[], bool], limit: timedelta = timedelta(hours=3), copies: int = 1
    ) -> None:
        """Move the clock from due time to due time, delivering, until ``done()`` (no timer runs)."""
        end = self.clock() + limit
        while not done():
            due = self.follow_ups.next_due()
            assert due is not None, "no follow-up left to deliver"
            assert due <= end, "not done within the limit"
            if due > self.clock():
                self.clock.now = due
            self.deliver_due(copies)

    def changes(self, run: str) -> Counter[RunState]:
        return Counter(state for run_id, state in self.entered if run_id == run)

    def run_for(self, duration: timedelta, copies: int = 1) -> None:
        end = self.clock() + duration

        def past_end() -> bool:
            due = self.follow_ups.next_due()
            return due is None or due > end

        self.run_follow_ups_until(past_end, copies=copies)
        self.clock.now = end


@pytest.fixture
def world() -> FollowUpWorld:
    return FollowUpWorld()


def idle_config() -> bytes:
    return config_bytes(cleanup={"idle_after_minutes": IDLE_MINUTES})


def deploying(world: FollowUpWorld, content: bytes | None = None, name: str = "phi3.yaml") -> str:
    """A run whose job ended with no event; its submitted-state follow-up takes it to deploying."""
    record = world.drop(content, name=name)
    assert record is not None and record.state == RunState.SUBMITTED
    world.platform.finish_job(record.run_id)
    world.run_follow_ups_until(lambda: world.state(record.run_id) == RunState.DEPLOYING)
    return record.run_id


def test_a_deployment_that_becomes_ready_is_finished_by_its_follow_up_without_a_timer_tick(
    world: FollowUpWorld,
) -> None:
    run = deploying(world)
    ready_at = world.clock() + timedelta(minutes=4, seconds=7)
    world.run_follow_ups_until(lambda: world.clock() >= ready_at)  # provisioning: checks back off meanwhile
    world.platform.complete_deployments()
    ready_at = world.clock()
    world.run_follow_ups_until(lambda: world.state(run) == RunState.DEPLOYED)
    assert world.clock() - ready_at <= backoff(RunState.DEPLOYING, 99)  # at most one capped interval late
    assert world.changes(run)[RunState.DEPLOYED] == 1
    assert list(world.platform.endpoints) and world.platform.endpoints[next(iter(world.platform.endpoints))].traffic
    # The deploying chain ended with the move; the next watch is the idle deadline (an endpoint check).
    pending = [f for _, f in world.follow_ups.pending]
    assert [(f.kind, f.watch.split("@")[0]) for f in pending] == [(FollowUpKind.ENDPOINT, "deployed")]


def test_checks_back_off_while_nothing_changes(world: FollowUpWorld) -> None:
    run = deploying(world)
    start = world.clock()
    world.run_follow_ups_until(lambda: world.clock() - start >= timedelta(minutes=10))
    sent = [f for f in world.follow_ups.sent if f.watch.startswith("deploying@")]
    gaps = [backoff(RunState.DEPLOYING, f.attempt).total_seconds() for f in sent]
    assert gaps[:4] == [15, 30, 30, 30]  # 15 s doubling, capped at 30 s for a deployment
    assert world.state(run) == RunState.DEPLOYING


def test_a_lost_follow_up_changes_nothing_the_timer_still_finishes_the_run_once(world: FollowUpWorld) -> None:
    run = deploying(world)
    world.follow_ups.lose_all()  # the queue lost the deploying check
    world.platform.complete_deployments()
    world.clock.advance(minutes=5)
    assert world.deliver_due() == []
    assert world.state(run) == RunState.DEPLOYING  # nobody looked yet
    world.reconcile()  # the backstop
    assert world.state(run) == RunState.DEPLOYED
    world.reconcile()
    assert world.changes(run)[RunState.DEPLOYED] == 1
    assert len(world.platform.endpoints) == 1


def test_a_duplicated_follow_up_changes_nothing_one_deploy_one_state_change_one_chain(world: FollowUpWorld) -> None:
    record = world.drop(config_bytes(notify={"webhooks": ["http://127.0.0.1:9/hook"]}))
    assert record is not None
    run = record.run_id
    world.platform.finish_job(run)
    world.run_follow_ups_until(lambda: world.state(run) == RunState.DEPLOYING, copies=2)
    world.run_for(timedelta(minutes=3), copies=2)  # provisioning: every check arrives twice
    world.platform.complete_deployments()
    world.run_follow_ups_until(lambda: world.state(run) == RunState.DEPLOYED, copies=3)
    waiting = [f for _, f in world.follow_ups.pending]
    for message in [f for f in world.follow_ups.sent if f not in waiting]:  # every delivered one comes again, late
        world.handle(message)
    changes = world.changes(run)
    assert all(n == 1 for n in changes.values()), changes
    assert len(world.platform.endpoints) == 1 and world.platform.submit_calls == 1
    assert world.state(run) == RunState.DEPLOYED
    owed = world.store.get(run).outbox.events  # type: ignore[union-attr]
    assert owed and len({e.id for e in owed}) == len(owed)  # one notification owed per state entered
    assert Counter(e.event for e in owed)[RunState.DEPLOYED.value] == 1
    # Each watch's chain stayed single: one message per attempt, and one pending (the idle check).
    per_attempt = Counter((f.kind, f.watch, f.attempt) for f in world.follow_ups.sent)
    assert set(per_attempt.values()) == {1}
    assert len(world.follow_ups.pending) == 1


def test_a_late_check_of_a_state_the_run_has_left_is_dropped(world: FollowUpWorld) -> None:
    run = deploying(world)
    record = world.store.get(run)
    assert record is not None
    stale = FollowUp(run, FollowUpKind.RUN, watch_of(record), attempt=3)
    world.platform.complete_deployments()
    world.reconcile()
    assert world.state(run) == RunState.DEPLOYED
    before = len(world.follow_ups.sent)
    assert world.handle(stale).startswith("stale")
    assert len(world.follow_ups.sent) == before


def test_an_idle_endpoint_is_deleted_at_its_deadline_by_the_follow_up(world: FollowUpWorld) -> None:
    run = deploying(world, idle_config())
    world.platform.complete_deployments()
    world.run_follow_ups_until(lambda: world.state(run) == RunState.DEPLOYED)
    record = world.store.get(run)
    assert record is not None
    deadline = datetime.fromisoformat(record.timeline["deployed"]) + timedelta(minutes=IDLE_MINUTES)
    # A request 10 minutes in moves the deadline: the check at the first deadline keeps it and looks again.
    world.clock.advance(minutes=10)
    assert record.endpoint_name
    world.platform.invoke(record.endpoint_name, None, {"input_data": {}})
    world.run_follow_ups_until(lambda: world.state(run) == RunState.DELETED)
    assert world.platform.deleted_endpoints == [record.endpoint_name]
    assert deadline + timedelta(minutes=10) <= world.clock() <= deadline + timedelta(minutes=10, seconds=2)
    assert world.follow_ups.pending == []  # a deleted run needs no watching


def test_a_canary_is_promoted_at_its_window_end_by_the_follow_up(world: FollowUpWorld) -> None:
    first = deploying(world, line_config(), "line-v1.yaml")
    world.platform.complete_deployments()
    world.run_follow_ups_until(lambda: world.state(first) == RunState.DEPLOYED)
    second = deploying(world, line_config("Pack for a swim?"), "line-v2.yaml")
    world.platform.complete_deployments()
    world.run_follow_ups_until(lambda: world.state(second) == RunState.CANARY)
    record = world.store.get(second)
    assert record is not None and record.canary is not None and record.canary.observe_until
    world.run_follow_ups_until(lambda: world.state(second) == RunState.DEPLOYED)
    assert record.canary.observe_until <= world.clock() <= record.canary.observe_until + timedelta(seconds=2)
    assert world.platform.endpoints[ENDPOINT].traffic == {record.deployment_name: 100}
    cleanup(world.store, world.platform)  # the timer's sweep agrees: nothing left to do on the line
    assert world.changes(second)[RunState.DEPLOYED] == 1


def test_a_kept_endpoint_is_not_watched(world: FollowUpWorld) -> None:
    run = deploying(world, config_bytes(cleanup={"idle_after_minutes": IDLE_MINUTES, "keep": True}))
    world.platform.complete_deployments()
    world.run_follow_ups_until(lambda: world.state(run) == RunState.DEPLOYED)
    assert world.follow_ups.pending == []


def test_a_run_held_for_approval_is_not_watched_and_deploys_by_the_timer_once_approved(world: FollowUpWorld) -> None:
    from shared.services.approval import decide

    manual = config_bytes(deployment={**CONFIG["deployment"], "approval": "manual"})  # type: ignore[dict-item]
    record = world.drop(manual)
    assert record is not None
    world.platform.finish_job(record.run_id)
    world.run_follow_ups_until(lambda: world.state(record.run_id) == RunState.REGISTERED)
    world.run_for(timedelta(hours=1))
    assert world.follow_ups.pending == []  # no answer is due while a person decides
    decide(world.store, record.run_id, "approved", by="ana", reason="fine")
    world.reconcile()
    assert world.state(record.run_id) == RunState.DEPLOYING
    assert [f.watch.split("@")[0] for _, f in world.follow_ups.pending] == ["deploying"]


def test_a_check_that_fails_changes_nothing_and_the_timer_still_finishes_the_run(world: FollowUpWorld) -> None:
    from tests.fakes import transient

    run = deploying(world)
    world.platform.complete_deployments()
    world.clock.advance(seconds=15)
    (message,) = [f for f in world.follow_ups.deliver_due() if f.watch.startswith("deploying@")]
    for _ in range(5):  # the host's tries, up to maxDequeueCount; then the message is in the poison queue
        world.platform.fail_next["get_deployment"] = transient()
        with pytest.raises(Exception, match="throttled"):
            world.handle(message)
    assert world.state(run) == RunState.DEPLOYING and world.follow_ups.pending == []
    world.reconcile()
    assert world.state(run) == RunState.DEPLOYED and world.changes(run)[RunState.DEPLOYED] == 1
