"""A canary whose error rates cannot be read (Azure Monitor down, or the app's identity may not read it) is
never judged on no evidence and never left a canary for ever: it keeps its share while the platform does not
answer, and once ``METRICS_PATIENCE`` past its window it is failed, the traffic back on the previous deployment,
which served throughout (docs/azure-faults.md)."""

from __future__ import annotations

import pytest

from shared.exceptions import AutopilotError, PlatformError
from shared.services.canary import METRICS_PATIENCE
from shared.states import RunState
from tests.fakes import transient
from tests.functional.shared.test_canary import ENDPOINT, dep, first_and_canary
from tests.functional.shared.world import World


def look_without_metrics(world: World, error: AutopilotError) -> None:
    world.platform.fail_next["deployment_metrics"] = error
    world.reconcile()


@pytest.mark.parametrize(
    "error",
    [
        transient("503 Service Unavailable"),
        PlatformError("(AuthorizationFailed) no metrics read", "AuthorizationFailed"),
    ],
    ids=["monitor-down", "no-permission"],
)
def test_a_canary_without_error_rates_waits_then_is_failed_with_the_traffic_back(error: AutopilotError) -> None:
    world = World()
    first, second = first_and_canary(world)
    look_without_metrics(world, error)  # inside the window
    assert world.state(second) == RunState.CANARY
    world.clock.advance(minutes=11)  # the window is over
    look_without_metrics(world, error)
    assert world.state(second) == RunState.CANARY  # no evidence yet either way: neither promoted nor failed
    world.clock.advance(seconds=METRICS_PATIENCE.total_seconds())
    look_without_metrics(world, error)

    record = world.store.get(second)
    assert record is not None and record.state == RunState.DEPLOY_FAILED
    assert record.last_error_code == "CanaryUnverified" and "could not be read" in record.errors[0].message
    endpoint = world.platform.endpoints[ENDPOINT]
    assert endpoint.traffic == {dep(world, first): 100} and world.state(first) == RunState.DEPLOYED


def test_metrics_back_within_the_patience_let_the_canary_be_judged() -> None:
    world = World()
    first, second = first_and_canary(world)
    world.clock.advance(minutes=11)
    look_without_metrics(world, transient("503 Service Unavailable"))
    world.platform.serve(ENDPOINT, dep(world, second), requests=30)
    world.platform.serve(ENDPOINT, dep(world, first), requests=120)
    world.reconcile()
    assert world.state(second) == RunState.DEPLOYED
