"""One stable endpoint per model line: a second run on the same ``deployment.endpoint_name`` is a canary
there (share of traffic, smoke test, observation window), then promoted or rolled back; ``rollback`` and the
retire step of the cleanup; duplicates and crashes leave the same end state."""

from __future__ import annotations

from typing import Any

import pytest

from shared.exceptions import PlatformError
from shared.ledger.parts import Actor
from shared.platform.port import MAX_DEPLOYMENTS_PER_ENDPOINT, DeploymentState
from shared.services.cleanup import cleanup
from shared.services.reconcile import reconcile_run
from shared.services.rollback import RollbackError, rollback_endpoint
from shared.states import RolloutPhase, RunState
from tests.configs import CONFIG, config_bytes
from tests.functional.shared.world import World

ENDPOINT = "ft-line-a"


def line_config(prompt: str = "Pack for a hike?", **deployment: Any) -> bytes:
    section = {
        **CONFIG["deployment"],  # type: ignore[dict-item]
        "endpoint_name": ENDPOINT,
        "canary_percent": 20,
        "observe_minutes": 10,
        "grace_minutes": 30,
        "smoke_test": {"messages": [{"role": "user", "content": prompt}]},
        **deployment,
    }
    return config_bytes(deployment=section)


def deployed_run(world: World, content: bytes, name: str) -> str:
    record = world.drop(content, name=name)
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    return record.run_id


def first_and_canary(world: World, **deployment: Any) -> tuple[str, str]:
    first = deployed_run(world, line_config(), "line-v1.yaml")
    assert world.state(first) == RunState.DEPLOYED
    second = deployed_run(world, line_config("Pack for a swim?", **deployment), "line-v2.yaml")
    return first, second


def dep(world: World, run: str) -> str:
    record = world.store.get(run)
    assert record is not None and record.deployment_name
    return record.deployment_name


def test_a_second_run_on_the_endpoint_is_a_canary_then_gets_all_the_traffic() -> None:
    world = World()
    first, second = first_and_canary(world)
    endpoint = world.platform.endpoints[ENDPOINT]
    assert list(world.platform.endpoints) == [ENDPOINT]  # no second endpoint
    assert world.state(second) == RunState.CANARY
    assert endpoint.traffic == {dep(world, first): 80, dep(world, second): 20}
    record = world.store.get(second)
    assert record is not None and record.rollout is not None
    assert record.canary is not None
    assert record.canary.previous_run == first and record.canary.phase == RolloutPhase.OBSERVING
    assert record.smoke_test and record.smoke_test.answer
    assert world.status.read(f"_runs/{second}.json")["rollout"]["phase"] == "observing"  # type: ignore[index]

    world.platform.serve(ENDPOINT, dep(world, second), requests=50, errors=1)
    world.platform.serve(ENDPOINT, dep(world, first), requests=200, errors=2)
    world.reconcile()  # inside the window: progress only
    record = world.store.get(second)
    assert record is not None and record.state == RunState.CANARY
    assert record.canary and record.canary.canary_seen and record.canary.canary_seen.requests >= 50

    world.clock.advance(minutes=11)
    world.reconcile()
    assert world.state(second) == RunState.DEPLOYED and world.state(first) == RunState.DEPLOYED
    assert endpoint.traffic == {dep(world, second): 100}
    old = world.store.get(first)
    assert old is not None and old.rollout and old.rollout.replaced_by == second

    cleanup(world.store, world.platform)  # inside the grace period: the previous deployment stays
    assert dep(world, first) in endpoint.deployments
    world.clock.advance(minutes=31)
    world.platform.serve(ENDPOINT, dep(world, second), requests=1)
    endpoint.last_request_at = world.clock()
    cleanup(world.store, world.platform)
    assert dep(world, first) not in endpoint.deployments and ENDPOINT in world.platform.endpoints
    assert world.state(first) == RunState.DELETED and world.state(second) == RunState.DEPLOYED


def test_a_failing_smoke_test_puts_the_traffic_back_and_deletes_the_new_deployment() -> None:
    world = World()
    first = deployed_run(world, line_config(), "line-v1.yaml")
    record = world.drop(line_config("Pack for a swim?"), name="line-v2.yaml")
    assert record is not None
    second = record.run_id
    world.platform.failing_deployments = {dep(world, second)}
    world.finish_through_reconcile(second)
    after = world.store.get(second)
    assert after is not None and after.state == RunState.DEPLOY_FAILED
    assert after.last_error_code == "SmokeTestFailed" and "traffic is back on" in after.errors[0].message
    endpoint = world.platform.endpoints[ENDPOINT]
    assert endpoint.traffic == {dep(world, first): 100} and list(endpoint.deployments) == [dep(world, first)]
    assert world.state(first) == RunState.DEPLOYED


def test_a_canary_with_more_errors_than_the_previous_deployment_is_rolled_back() -> None:
    world = World()
    first, second = first_and_canary(world)
    world.platform.serve(ENDPOINT, dep(world, second), requests=40, errors=10)  # plus the smoke test
    world.platform.serve(ENDPOINT, dep(world, first), requests=160, errors=1)
    world.clock.advance(minutes=11)
    world.reconcile()
    record = world.store.get(second)
    assert record is not None and record.state == RunState.DEPLOY_FAILED
    assert record.last_error_code == "CanaryErrorRate" and "(10/41 answers 5xx or 424)" in record.errors[0].message
    endpoint = world.platform.endpoints[ENDPOINT]
    assert endpoint.traffic == {dep(world, first): 100} and dep(world, second) not in endpoint.deployments
    assert world.state(first) == RunState.DEPLOYED


def test_rollback_brings_the_previous_deployment_back_and_is_idempotent() -> None:
    world = World()
    first, second = first_and_canary(world)
    world.clock.advance(minutes=11)
    world.reconcile()
    assert world.state(second) == RunState.DEPLOYED
    rolled = rollback_endpoint(world.store, world.platform, ENDPOINT, by="ana")
    again = rollback_endpoint(world.store, world.platform, ENDPOINT, by="ana")
    assert rolled.canary and rolled.canary.phase == RolloutPhase.ROLLED_BACK
    assert again.canary and again.canary.rolled_back == rolled.canary.rolled_back == Actor("ana", world.clock())
    endpoint = world.platform.endpoints[ENDPOINT]
    assert endpoint.traffic == {dep(world, first): 100}
    old = world.store.get(first)
    assert old is not None and old.rollout is not None and old.rollout.retire_after is None
    endpoint.last_request_at = world.clock()
    cleanup(world.store, world.platform)  # the rolled-back deployment carries no traffic: it is retired
    assert list(endpoint.deployments) == [dep(world, first)]
    assert world.state(second) == RunState.DELETED and world.state(first) == RunState.DEPLOYED
    with pytest.raises(RollbackError):
        rollback_endpoint(world.store, world.platform, ENDPOINT, by="ana")  # nothing left to go back to


def test_rollback_during_the_window_ends_the_canary() -> None:
    world = World()
    first, second = first_and_canary(world)
    rollback_endpoint(world.store, world.platform, ENDPOINT, by="ana")
    record = world.store.get(second)
    assert record is not None and record.state == RunState.DEPLOY_FAILED and record.last_error_code == "RolledBack"
    world.clock.advance(minutes=11)
    world.reconcile()
    assert world.platform.endpoints[ENDPOINT].traffic == {dep(world, first): 100}


def test_rollback_of_an_unknown_endpoint_is_a_clear_error() -> None:
    world = World()
    with pytest.raises(RollbackError, match="no endpoint"):
        rollback_endpoint(world.store, world.platform, "ft-nope", by="ana")


def test_a_crash_between_the_traffic_switch_and_the_ledger_write_ends_the_same() -> None:
    world = World()
    first, second = first_and_canary(world)
    world.clock.advance(minutes=11)
    record = world.store.get(second)
    assert record is not None
    real_advance = world.store.advance

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("worker died")

    world.store.advance = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        reconcile_run(world.sweep_context(), record)
    world.store.advance = real_advance  # type: ignore[method-assign]
    world.reconcile()
    world.reconcile()  # a duplicate look changes nothing
    assert world.state(second) == RunState.DEPLOYED
    assert world.platform.endpoints[ENDPOINT].traffic == {dep(world, second): 100}
    old = world.store.get(first)
    assert old is not None and old.rollout and old.rollout.replaced_by == second
    assert sum("replaced by run" in n for n in old.notes) == 1


def test_a_deployment_that_fails_to_provision_leaves_the_endpoint_serving() -> None:
    world = World()
    first = deployed_run(world, line_config(), "line-v1.yaml")
    world.platform.deployment_outcome = DeploymentState.FAILED
    world.platform.deployment_error_code = "OutOfQuota"
    second = deployed_run(world, line_config("v2"), "line-v2.yaml")
    assert world.state(second) == RunState.DEPLOY_FAILED
    assert ENDPOINT in world.platform.endpoints and world.state(first) == RunState.DEPLOYED
    assert list(world.platform.endpoints[ENDPOINT].deployments) == [dep(world, first)]


def test_a_full_endpoint_refuses_the_canary_with_the_quota_named() -> None:
    world = World()
    first = deployed_run(world, line_config(), "line-v1.yaml")
    endpoint = world.platform.endpoints[ENDPOINT]
    for i in range(MAX_DEPLOYMENTS_PER_ENDPOINT - 1):
        endpoint.deployments[f"old-{i}"] = DeploymentState.SUCCEEDED
    second = deployed_run(world, line_config("v2"), "line-v2.yaml")
    record = world.store.get(second)
    assert record is not None and record.state == RunState.DEPLOY_FAILED
    assert "allows 20 per endpoint" in record.errors[0].message
    assert record.errors[0].path == "deployment.endpoint_name"
    assert world.state(first) == RunState.DEPLOYED


def test_a_deployment_name_taken_on_the_endpoint_is_refused() -> None:
    world = World()
    deployed_run(world, line_config(deployment_name="blue"), "line-v1.yaml")
    second = deployed_run(world, line_config("v2", deployment_name="blue"), "line-v2.yaml")
    record = world.store.get(second)
    assert record is not None and record.state == RunState.DEPLOY_FAILED
    assert "already has a deployment named blue" in record.errors[0].message


def test_the_platform_never_deletes_a_deployment_that_carries_traffic() -> None:
    world = World()
    first = deployed_run(world, line_config(), "line-v1.yaml")
    with pytest.raises(PlatformError) as caught:
        world.platform.begin_delete_deployment(ENDPOINT, dep(world, first))
    assert caught.value.code == "DeploymentHasTraffic"


def test_an_idle_shared_endpoint_is_deleted_whole_and_every_run_on_it_ends_deleted() -> None:
    world = World()
    first, second = first_and_canary(world)
    world.clock.advance(minutes=11)
    world.reconcile()
    world.clock.advance(minutes=5)
    decisions = cleanup(world.store, world.platform)  # idle 30 minutes? not yet
    assert ENDPOINT in world.platform.endpoints, decisions
    world.clock.advance(hours=2)
    cleanup(world.store, world.platform)
    assert ENDPOINT not in world.platform.endpoints
    assert world.state(first) == RunState.DELETED and world.state(second) == RunState.DELETED


def test_cancel_of_a_canary_puts_the_traffic_back() -> None:
    from shared.services.cancel import cancel_run

    world = World()
    first, second = first_and_canary(world)
    cancel_run(world.store, world.platform, second, by="ana")
    endpoint = world.platform.endpoints[ENDPOINT]
    assert world.state(second) == RunState.CANCELED and endpoint.traffic == {dep(world, first): 100}
    assert list(endpoint.deployments) == [dep(world, first)]


def test_a_crash_after_the_abort_of_a_failing_canary_still_ends_deploy_failed() -> None:
    world = World()
    first, second = first_and_canary(world)
    world.platform.serve(ENDPOINT, dep(world, second), requests=40, errors=20)
    world.clock.advance(minutes=11)
    real_advance = world.store.advance

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("worker died")

    world.store.advance = crash  # type: ignore[method-assign]
    world.reconcile()  # traffic back and the deployment deleted, then the worker dies before the ledger write
    world.store.advance = real_advance  # type: ignore[method-assign]
    assert world.state(second) == RunState.CANARY
    world.reconcile()
    assert world.state(second) == RunState.DEPLOY_FAILED and world.state(first) == RunState.DEPLOYED
    assert world.platform.endpoints[ENDPOINT].traffic == {dep(world, first): 100}


def test_a_cleanup_sweep_reads_each_run_once() -> None:
    # The retire step, the endpoint's runs, the health rule and the deletion all look at the same two runs.
    world = World()
    first, second = first_and_canary(world)
    world.clock.advance(minutes=11)
    world.reconcile()
    world.platform.endpoints[ENDPOINT].healthy = False
    world.clock.advance(hours=2)  # past the grace period, and idle
    reads = world.ledger.calls["get"]
    decisions = cleanup(world.store, world.platform)
    assert world.ledger.calls["get"] - reads == 2, decisions
    assert world.state(first) == RunState.DELETED and world.state(second) == RunState.DEPLOYED
    assert [d.action for d in decisions] == ["skip"] and "probe 1 of 3" in decisions[0].reason
