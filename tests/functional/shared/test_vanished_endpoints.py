"""Runs whose endpoint the platform no longer has say so (issue 22, finding 3): a deployed run ends ``deleted``
and a canary ``deploy_failed``, each with the reason, and the observers of state changes hear it, but only on
the platform's word that the endpoint is gone, never on an error."""

from __future__ import annotations

import pytest

from shared.ledger.record import RunRecord
from shared.states import RolloutPhase, RunState
from tests.fakes import transient
from tests.functional.shared.test_canary import ENDPOINT, deployed_run, line_config
from tests.functional.shared.world import World


class Heard:
    """An observer of state changes, as the notifier is one."""

    def __init__(self) -> None:
        self.states: list[tuple[str, str]] = []

    def __call__(self, record: RunRecord) -> None:
        self.states.append((record.run_id, record.state.value))


def deployed(world: World) -> RunRecord:
    record = world.drop()
    assert record is not None
    world.finish_through_reconcile(record.run_id)
    done = world.store.get(record.run_id)
    assert done is not None and done.state == RunState.DEPLOYED and done.endpoint_name
    return done


def test_a_deployed_run_whose_endpoint_was_deleted_by_hand_ends_deleted_with_the_reason() -> None:
    heard = Heard()
    world = World(observers=[heard])
    record = deployed(world)
    del world.platform.endpoints[record.endpoint_name]  # deleted in the portal
    world.reconcile()
    after = world.store.get(record.run_id)
    assert after is not None and after.state == RunState.DELETED
    assert after.last_error_code == "EndpointGone"
    assert after.errors[0].path == "endpoint" and "no longer exists" in after.errors[0].message
    assert heard.states[-1] == (record.run_id, "deleted")
    assert world.status.read(f"_runs/{record.run_id}.json")["error_code"] == "EndpointGone"  # type: ignore[index]


def test_a_deleted_endpoint_mid_canary_ends_both_runs() -> None:
    heard = Heard()
    world = World(observers=[heard])
    first = deployed_run(world, line_config(), "line-v1.yaml")
    second = deployed_run(world, line_config("Pack for a swim?"), "line-v2.yaml")
    assert world.state(second) == RunState.CANARY
    del world.platform.endpoints[ENDPOINT]
    world.clock.advance(minutes=2)
    world.reconcile()
    assert world.state(first) == RunState.DELETED
    canary = world.store.get(second)
    assert canary is not None and canary.state == RunState.DEPLOY_FAILED
    assert canary.last_error_code == "EndpointGone" and ENDPOINT in canary.errors[0].message
    assert canary.canary is not None and canary.canary.phase == RolloutPhase.FAILED
    assert {(first, "deleted"), (second, "deploy_failed")} <= set(heard.states)


def test_a_canary_still_deploying_onto_a_deleted_endpoint_ends_deploy_failed() -> None:
    world = World()
    deployed_run(world, line_config(), "line-v1.yaml")
    record = world.drop(line_config("Pack for a swim?"), name="line-v2.yaml")
    assert record is not None
    world.platform.finish_job(record.run_id)
    world.reconcile()
    assert world.state(record.run_id) == RunState.DEPLOYING
    del world.platform.endpoints[ENDPOINT]
    world.reconcile()
    after = world.store.get(record.run_id)
    assert after is not None and after.state == RunState.DEPLOY_FAILED and after.last_error_code == "EndpointGone"


def test_a_canary_promoted_after_its_previous_deployment_was_deleted_by_hand_still_gets_the_traffic() -> None:
    world = World()
    first = deployed_run(world, line_config(), "line-v1.yaml")
    second = deployed_run(world, line_config("Pack for a swim?"), "line-v2.yaml")
    first_record = world.store.get(first)
    assert first_record is not None and first_record.deployment_name
    endpoint = world.platform.endpoints[ENDPOINT]
    endpoint.traffic.pop(first_record.deployment_name)
    del endpoint.deployments[first_record.deployment_name]  # deleted in the portal
    world.clock.advance(minutes=11)
    world.reconcile()
    assert world.state(second) == RunState.DEPLOYED
    second_record = world.store.get(second)
    assert second_record is not None and second_record.deployment_name
    assert endpoint.traffic == {second_record.deployment_name: 100}


@pytest.mark.parametrize("failing", ["list_endpoints", "get_deployment"])
def test_no_answer_from_the_platform_is_no_evidence(failing: str) -> None:
    world = World()
    record = deployed(world)
    assert record.endpoint_name
    del world.platform.endpoints[record.endpoint_name]
    # The listing fails, or the endpoint is not listed and the read that would confirm it fails.
    world.platform.fail_next[failing] = transient("503 Service Unavailable")
    world.reconcile()
    assert world.state(record.run_id) == RunState.DEPLOYED
    world.reconcile()  # the platform answers again: now it is known
    assert world.state(record.run_id) == RunState.DELETED


def test_a_listed_endpoint_costs_deployed_runs_no_platform_read() -> None:
    world = World()
    record = deployed(world)
    reads: list[str] = []
    real = world.platform.get_deployment

    def counted(endpoint: str, deployment: str):  # type: ignore[no-untyped-def]
        reads.append(endpoint)
        return real(endpoint, deployment)

    world.platform.get_deployment = counted  # type: ignore[method-assign]
    world.reconcile()
    assert reads == [] and world.state(record.run_id) == RunState.DEPLOYED
