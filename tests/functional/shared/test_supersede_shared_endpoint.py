"""A superseded run on a shared endpoint takes only its deployment away, never the endpoint other runs serve
from (issue 22, finding 2). Config Y's run made endpoint ``ft-line-a``; config X's run joined it as a canary and
was promoted; X is then uploaded again with its own endpoint, which supersedes X's first run."""

from __future__ import annotations

from shared.services.cleanup import cleanup
from shared.states import RunState
from tests.configs import config_bytes
from tests.functional.shared.test_canary import ENDPOINT, dep, deployed_run, line_config
from tests.functional.shared.world import World


def promoted_canary(world: World) -> tuple[str, str]:
    """Y's run serving ``ft-line-a`` at 0% in its grace period, X's first run promoted there."""
    y = deployed_run(world, line_config(), "line-y.yaml")
    x1 = deployed_run(world, line_config("Pack for a swim?"), "line-x.yaml")
    assert world.state(x1) == RunState.CANARY
    world.clock.advance(minutes=11)
    world.reconcile()
    assert world.state(x1) == RunState.DEPLOYED and world.state(y) == RunState.DEPLOYED
    assert world.platform.endpoints[ENDPOINT].traffic == {dep(world, x1): 100}
    return y, x1


def test_a_superseded_canary_leaves_the_shared_endpoint_serving_the_run_it_replaced() -> None:
    world = World()
    y, x1 = promoted_canary(world)
    x2 = deployed_run(world, config_bytes(), "line-x.yaml")  # X again, on its own endpoint
    assert world.state(x2) == RunState.DEPLOYED

    assert ENDPOINT in world.platform.endpoints and ENDPOINT not in world.platform.deleted_endpoints
    endpoint = world.platform.endpoints[ENDPOINT]
    assert endpoint.traffic == {dep(world, y): 100}  # the traffic moved back before the deployment went
    assert list(endpoint.deployments) == [dep(world, y)]
    assert world.state(x1) == RunState.DELETED
    retired = world.store.get(x1)
    assert retired is not None and f"superseded by run {x2}" in retired.notes[-1]
    assert f"removed from endpoint {ENDPOINT}, which keeps serving run(s) {y}" in retired.notes[-1]
    kept = world.store.get(y)
    assert kept is not None and kept.state == RunState.DEPLOYED
    assert kept.rollout is not None and kept.rollout.replaced_by is None  # serving again: not retired later
    world.clock.advance(minutes=60)
    endpoint.last_request_at = world.clock()
    cleanup(world.store, world.platform)
    assert world.state(y) == RunState.DEPLOYED and list(endpoint.deployments) == [dep(world, y)]


def test_a_superseded_run_whose_endpoint_others_joined_keeps_the_endpoint_for_them() -> None:
    world = World()
    y, x1 = promoted_canary(world)
    y2 = deployed_run(world, config_bytes(), "line-y.yaml")  # Y again, on its own endpoint
    assert world.state(y2) == RunState.DEPLOYED
    # Y made ft-line-a, but X's run serves from it now: only Y's deployment (at 0%) goes.
    assert world.state(y) == RunState.DELETED
    endpoint = world.platform.endpoints[ENDPOINT]
    assert endpoint.traffic == {dep(world, x1): 100} and list(endpoint.deployments) == [dep(world, x1)]
    assert world.state(x1) == RunState.DEPLOYED


def test_an_endpoint_that_serves_no_other_run_is_deleted_with_the_superseded_run() -> None:
    world = World()
    y, x1 = promoted_canary(world)
    world.clock.advance(minutes=31)  # past Y's grace period: the retire step deletes Y's deployment
    world.platform.endpoints[ENDPOINT].last_request_at = world.clock()
    cleanup(world.store, world.platform)
    assert world.state(y) == RunState.DELETED
    x2 = deployed_run(world, config_bytes(), "line-x.yaml")
    assert world.state(x2) == RunState.DEPLOYED
    assert ENDPOINT not in world.platform.endpoints and world.state(x1) == RunState.DELETED


def test_a_superseded_run_that_a_canary_is_compared_with_stays_until_the_rollout_ends() -> None:
    world = World()
    _, x1 = promoted_canary(world)
    world.clock.advance(minutes=31)
    world.platform.endpoints[ENDPOINT].last_request_at = world.clock()
    cleanup(world.store, world.platform)  # Y's deployment retired: X's first run alone on ft-line-a
    z = deployed_run(world, line_config("Pack for a ride?"), "line-z.yaml")
    assert world.state(z) == RunState.CANARY  # compared with X's first run's deployment
    x2 = deployed_run(world, config_bytes(), "line-x.yaml")
    assert world.state(x2) == RunState.DEPLOYED
    endpoint = world.platform.endpoints[ENDPOINT]
    assert world.state(x1) == RunState.DEPLOYED and dep(world, x1) in endpoint.deployments  # the baseline stays
    world.platform.serve(ENDPOINT, dep(world, z), requests=10)
    world.clock.advance(minutes=11)
    world.reconcile()  # Z passes: all traffic on Z; X's first run's deployment is at 0%
    assert world.state(z) == RunState.DEPLOYED
    world.clock.advance(minutes=31)
    endpoint.last_request_at = world.clock()
    cleanup(world.store, world.platform)
    assert world.state(x1) == RunState.DELETED and list(endpoint.deployments) == [dep(world, z)]
