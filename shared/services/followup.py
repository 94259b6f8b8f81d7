"""Service: follow-ups. A run that enters a state whose end the app must watch schedules its own check for when
the answer is due; the check runs the timers' own step for that one run, and schedules the next while nothing
has changed. The timers (reconcile every 5 minutes, cleanup every 15) stay: they finish whatever a lost
message leaves.

What is watched, and when the first check comes (``first_delay``):
- ``submitted``, ``running``: the job, for a job no event reports; checks back off to ``BACKOFF_CAPS``;
- ``completed``, ``registered``: normally left within the step that entered them; watched when a platform
  call failed on the way (not a run held for a person's approval: no answer is due);
- ``deploying``: the deployment's provisioning, 15 s then every 30 s;
- ``canary``: its window's end (``observe_until``), then 15 s doubling to a minute while the error rates are
  unread;
- ``deployed``: the endpoint's idle deadline (deployed + ``cleanup.idle_after_minutes``, plus the platform's
  ``activity_delay``), then each deadline the cleanup decision reports; none for ``cleanup.keep``.

A ``run`` check is ``reconcile_run`` (shared/services/reconcile.py), an ``endpoint`` check is
``check_endpoint`` (shared/services/cleanup.py). A check that moved the run ends its chain: the state it
entered schedules its own (``FollowUpScheduler``, a RunStore observer). A check of a run that has moved on
since the message was sent (another ``watch``) is stale and does nothing; a copy of a message handled twice
schedules its successor once (the port's marks, shared/followups.py). Every step is a guarded ETag write, so a
late or repeated check changes nothing the first did not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from shared import telemetry
from shared.followups import FollowUp, FollowUpKind, FollowUps
from shared.ledger.record import RunRecord
from shared.platform.port import MLPlatform
from shared.runs import RunStore
from shared.services.cleanup import check_endpoint
from shared.services.orphans import DEFAULT_ORPHAN_GRACE
from shared.services.reconcile import reconcile_run
from shared.services.stranded import DEFAULT_RECEIVED_DEADLINE
from shared.services.sweep import Deadline, SweepContext
from shared.services.vanished import end_if_gone
from shared.states import TERMINAL, RunState

log = logging.getLogger(__name__)

BACKOFF_FIRST = timedelta(seconds=15)
# The longest wait between two checks of one watch. A deployment: 30 s, so "ready -> deployed" is 15 s on
# average (benchmarks/latency.py; issue 21's goal is a 30 s median), for one platform read per check. A canary
# past its window whose error rates are unread: a minute. Jobs: 5 minutes, as the reconcile timer, since their
# events normally tell first. An endpoint without a known idle deadline (no metrics yet): the cleanup's period.
BACKOFF_CAPS: dict[RunState, timedelta] = {
    RunState.SUBMITTED: timedelta(minutes=5),
    RunState.RUNNING: timedelta(minutes=5),
    RunState.COMPLETED: timedelta(minutes=1),
    RunState.REGISTERED: timedelta(minutes=1),
    RunState.DEPLOYING: timedelta(seconds=30),
    RunState.CANARY: timedelta(minutes=1),
    RunState.DEPLOYED: timedelta(minutes=15),
}
# Checked at the due time plus this: a clock a little behind the platform's must not find the window still open.
DUE_MARGIN = timedelta(seconds=1)


def kind_for(state: RunState) -> FollowUpKind:
    return FollowUpKind.ENDPOINT if state == RunState.DEPLOYED else FollowUpKind.RUN


def watch_of(record: RunRecord) -> str:
    """What a check is for: the run's state and when it entered it. A run that moved on has another."""
    return f"{record.state.value}@{record.timeline.get(record.state.value, '')}"


def backoff(state: RunState, attempt: int) -> timedelta:
    """15 s, 30 s, 1 min, 2 min, ... up to the state's cap."""
    cap = BACKOFF_CAPS.get(state, timedelta(minutes=5))
    return min(BACKOFF_FIRST * (2 ** min(attempt, 20)), cap)


def endpoint_of(record: RunRecord) -> str | None:
    """The endpoint the run serves from: its own, or the shared one it joined as a canary."""
    return record.canary.endpoint if record.canary is not None else record.endpoint_name


def awaits_a_person(record: RunRecord) -> bool:
    """Registered and held for ``deployment.approval: manual`` with no decision yet: no answer is due (the
    decision is a ledger write, not a state, so the reconcile timer deploys it, within 5 minutes)."""
    return record.state == RunState.REGISTERED and record.manual_approval and record.approval is None


def first_delay(record: RunRecord, now: datetime, activity_delay: timedelta) -> timedelta | None:
    """When the first check of the state the run just entered is due; None: nothing to watch."""
    state = record.state
    if awaits_a_person(record):
        return None
    if state == RunState.CANARY:
        until = record.canary.observe_until if record.canary is not None else None
        return max(until - now, timedelta(0)) + DUE_MARGIN if until is not None else backoff(state, 0)
    if state == RunState.DEPLOYED:
        cleanup = record.config.cleanup if record.config is not None else None
        if cleanup is None or cleanup.keep or endpoint_of(record) is None:
            return None
        since = datetime.fromisoformat(record.timeline.get(state.value, now.isoformat()))
        due = since + timedelta(minutes=cleanup.idle_after_minutes) + activity_delay
        return max(due - now, timedelta(0)) + DUE_MARGIN
    if state in BACKOFF_CAPS:
        return backoff(state, 0)
    return None


class FollowUpScheduler:
    """A RunStore observer: every state a run enters that needs watching schedules its first check.

    ``activity_delay`` is asked only for a run entering ``deployed`` (it may build the platform adapter)."""

    def __init__(self, follow_ups: FollowUps, activity_delay: Callable[[], timedelta]) -> None:
        self.follow_ups = follow_ups
        self.activity_delay = activity_delay

    def __call__(self, record: RunRecord) -> None:
        if record.state in TERMINAL:
            return
        delay_of_activity = self.activity_delay() if record.state == RunState.DEPLOYED else timedelta(0)
        delay = first_delay(record, record.updated_at, delay_of_activity)
        if delay is None:
            return
        follow_up = FollowUp(record.run_id, kind_for(record.state), watch_of(record))
        if self.follow_ups.schedule(follow_up, delay):
            log.info(
                "run %s: %s check in %ss",
                record.run_id,
                follow_up.kind.value,
                int(delay.total_seconds()),
                extra={"run_id": record.run_id, "state": record.state.value},
            )


def follow_up(
    store: RunStore,
    platform: MLPlatform,
    follow_ups: FollowUps,
    message: FollowUp,
    *,
    deploy_timeout: timedelta,
    received_deadline: timedelta = DEFAULT_RECEIVED_DEADLINE,
    orphan_grace: timedelta = DEFAULT_ORPHAN_GRACE,
) -> str:
    """Handle one check; returns what it did, in words (for the log)."""
    record = store.get(message.run_id)
    if record is None:
        return "no such run; dropped"
    telemetry.bind(record)  # the check is about this run: its lines and spans carry the run's names
    if record.state in TERMINAL:
        return f"run is {record.state.value}; nothing to watch"
    if watch_of(record) != message.watch:
        return f"stale: scheduled in {message.watch}, the run is now {watch_of(record)}; dropped"
    now = store.clock()
    if message.kind == FollowUpKind.RUN:
        ctx = SweepContext(
            store=store,
            platform=platform,
            now=now,
            deadline=Deadline(240.0),
            concurrency=1,
            deploy_timeout=deploy_timeout,
            received_deadline=received_deadline,
            orphan_grace=orphan_grace,
        )
        after = reconcile_run(ctx, record)
        if after.state != record.state:
            return f"{record.state.value} -> {after.state.value}"
        if awaits_a_person(after):
            return "registered, awaiting approval; nothing to watch until a person decides"
        delay = backoff(record.state, message.attempt + 1)
    else:
        delay_or_stop = _endpoint_check(store, platform, record, message, now)
        if isinstance(delay_or_stop, str):
            return delay_or_stop
        delay = delay_or_stop
    if follow_ups.schedule(message.next(), delay):
        return f"{record.state.value}, unchanged; next check in {int(delay.total_seconds())}s"
    return f"{record.state.value}, unchanged; next check already scheduled (a duplicate)"


def _endpoint_check(
    store: RunStore, platform: MLPlatform, record: RunRecord, message: FollowUp, now: datetime
) -> timedelta | str:
    """The cleanup decision on the run's endpoint; the delay to the next check, or what ended the watch."""
    endpoint = endpoint_of(record)
    if endpoint is None:
        return "the run has no endpoint; nothing to watch"
    check = check_endpoint(store, platform, endpoint, now)
    if check.decision is None:
        ended = end_if_gone(store, platform, record)  # not listed: the reconcile's vanished step decides
        return f"endpoint {endpoint} not listed; run {ended.state.value if ended else record.state.value}"
    if check.decision.action == "delete":
        return f"endpoint {endpoint} deleted ({check.decision.reason})"
    if check.decision.action == "keep":
        return f"endpoint {endpoint} kept ({check.decision.reason}); nothing to watch"
    due = check.next_look + platform.activity_delay if check.next_look is not None else None
    if due is not None and due > now:
        return due - now + DUE_MARGIN
    return backoff(RunState.DEPLOYED, message.attempt + 1)  # no known deadline, or one passed (a failed delete)
