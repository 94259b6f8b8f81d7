"""Manual approval: a registered model waits, visibly, until someone approves (it then deploys) or rejects
(the run ends deploy_failed with who and why); decisions are idempotent and final."""

from __future__ import annotations

import pytest

from shared.exceptions import FieldIssue
from shared.ledger.parts import Approval
from shared.services.approval import ApprovalError, decide
from shared.states import RunState
from tests.configs import CONFIG, config_bytes
from tests.functional.shared.world import World

MANUAL = config_bytes(deployment={**CONFIG["deployment"], "approval": "manual"})


def registered(world: World) -> str:
    record = world.drop(MANUAL)
    assert record is not None
    run = record.run_id
    world.platform.finish_job(run)
    world.reconcile()
    assert world.state(run) == RunState.REGISTERED
    return run


def test_a_manual_run_waits_at_registered_and_says_so() -> None:
    world = World()
    run = registered(world)
    world.model_event(run)  # the deploy trigger comes, and is ignored
    world.reconcile()
    assert world.state(run) == RunState.REGISTERED and not world.platform.endpoints
    assert world.status.blobs["phi3.yaml.json"]["awaiting"] == "approval"


def test_approve_then_the_next_sweep_deploys() -> None:
    world = World()
    run = registered(world)
    record = decide(world.store, run, "approved", by="ana", reason="eval loss is fine")
    assert record.approval == Approval("approved", "ana", world.clock(), "eval loss is fine")
    assert world.status.blobs["phi3.yaml.json"]["awaiting"] is None
    world.reconcile()
    assert world.state(run) == RunState.DEPLOYING
    world.platform.complete_deployments()
    world.reconcile()
    assert world.state(run) == RunState.DEPLOYED and len(world.platform.endpoints) == 1


def test_reject_ends_the_run_with_who_and_why() -> None:
    world = World()
    run = registered(world)
    decide(world.store, run, "rejected", by="ben", reason="answers are off-topic")
    world.reconcile()
    record = world.store.get(run)
    assert record is not None and record.state == RunState.DEPLOY_FAILED and not world.platform.endpoints
    assert record.last_error_code == "Rejected"
    assert record.errors == [FieldIssue("deployment.approval", "rejected by ben: answers are off-topic")]


def test_a_decision_made_while_training_applies_when_the_model_is_registered() -> None:
    world = World()
    record = world.drop(MANUAL)
    assert record is not None
    decide(world.store, record.run_id, "approved", by="ana")
    world.finish_through_reconcile(record.run_id)
    assert world.state(record.run_id) == RunState.DEPLOYED


def test_decisions_are_idempotent_and_final() -> None:
    world = World()
    run = registered(world)
    first = decide(world.store, run, "approved", by="ana")
    again = decide(world.store, run, "approved", by="someone-else")
    assert again.approval == first.approval  # the same decision twice is the first one
    with pytest.raises(ApprovalError, match="already approved by ana"):
        decide(world.store, run, "rejected", by="ben", reason="changed my mind")


def test_what_cannot_be_decided_is_refused_with_the_reason() -> None:
    world = World()
    auto = world.drop()
    assert auto is not None
    with pytest.raises(ApprovalError, match=r"deployment\.approval is auto"):
        decide(world.store, auto.run_id, "approved", by="ana")
    with pytest.raises(ApprovalError, match="no run 'nope'"):
        decide(world.store, "nope", "approved", by="ana")
    run = registered(world)
    with pytest.raises(ApprovalError, match="needs a reason"):
        decide(world.store, run, "rejected", by="ana", reason="  ")
