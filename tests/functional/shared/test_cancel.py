"""Cancel: at any point before deployment the run ends canceled, exactly once, with nothing left running;
a cancel that races the job's completion or the deploy wins or loses cleanly."""

from __future__ import annotations

import pytest

from shared.exceptions import FieldIssue, TransientPlatformError
from shared.platform.port import JobStatus
from shared.services.cancel import CancelError, cancel_run
from shared.services.lifecycle import deploy
from shared.states import RunState
from tests.fakes import transient
from tests.functional.shared.world import World


def submitted(world: World) -> str:
    record = world.drop()
    assert record is not None
    return record.run_id


def test_cancel_during_training_cancels_the_job_and_ends_the_run() -> None:
    world = World()
    run = submitted(world)
    record = cancel_run(world.store, world.platform, run, by="ana")
    assert record.state == RunState.CANCELED and record.errors == [FieldIssue("run", "canceled by ana")]
    assert world.platform.jobs[run].status == JobStatus.CANCELED
    # The job's own Canceled (or a late Completed) event changes nothing.
    world.run_event("run_completed_pascal", run)
    world.reconcile()
    assert world.state(run) == RunState.CANCELED and not world.platform.registered


def test_cancel_after_the_job_completed_but_before_deploy() -> None:
    world = World()
    run = submitted(world)
    world.platform.finish_job(run)
    world.reconcile()  # completed -> registered -> deploying
    assert world.state(run) == RunState.DEPLOYING and world.platform.endpoints
    cancel_run(world.store, world.platform, run, by="ana")
    assert world.state(run) == RunState.CANCELED
    assert not world.platform.endpoints and world.platform.deleted_endpoints
    world.platform.complete_deployments()
    world.reconcile()
    assert world.state(run) == RunState.CANCELED


def test_a_cancel_landing_while_the_deploy_starts_its_endpoint_leaves_nothing_up() -> None:
    world = World()
    run = submitted(world)
    world.platform.finish_job(run)
    start = world.platform.begin_deploy

    def begin_then_cancel(request):  # type: ignore[no-untyped-def]
        start(request)  # the endpoint is being created ...
        cancel_run(world.store, world.platform, run, by="ben")  # ... when the cancel lands

    world.platform.begin_deploy = begin_then_cancel  # type: ignore[method-assign]
    world.reconcile()
    assert world.state(run) == RunState.CANCELED
    assert not world.platform.endpoints and world.platform.deleted_endpoints


def test_a_deployed_or_finished_run_cannot_be_canceled() -> None:
    world = World()
    run = submitted(world)
    world.finish_through_reconcile(run)
    assert world.state(run) == RunState.DEPLOYED
    with pytest.raises(CancelError, match="can no longer be canceled"):
        cancel_run(world.store, world.platform, run, by="ana")
    with pytest.raises(CancelError, match="no run 'nope'"):
        cancel_run(world.store, world.platform, "nope", by="ana")


def test_cancel_twice_is_one_cancel() -> None:
    world = World()
    run = submitted(world)
    first = cancel_run(world.store, world.platform, run, by="ana")
    again = cancel_run(world.store, world.platform, run, by="ben")
    assert again.state == RunState.CANCELED and again.errors == first.errors
    assert list(again.timeline).count("canceled") == 1


def test_the_platform_failing_mid_cancel_can_be_retried() -> None:
    world = World()
    run = submitted(world)
    world.platform.fail_next["cancel_job"] = transient()
    with pytest.raises(TransientPlatformError):
        cancel_run(world.store, world.platform, run, by="ana")
    assert world.state(run) == RunState.CANCELED  # the ledger decided first
    cancel_run(world.store, world.platform, run, by="ana")
    assert world.platform.jobs[run].status == JobStatus.CANCELED
    assert deploy(world.store, world.platform, run) is None
