"""The model line's registry aliases follow the rollout: the serving version is ``champion``, a canary's
version ``challenger``; promotion, failure and rollback move them (shared/services/aliases.py)."""

from __future__ import annotations

import yaml

from shared.exceptions import PlatformError
from shared.services.rollback import rollback_endpoint
from shared.states import RunState
from tests.functional.shared.test_canary import ENDPOINT, dep, deployed_run, line_config
from tests.functional.shared.world import World

MODEL = "line-model"  # both runs register versions of one model: one model line


def one_line(prompt: str) -> bytes:
    document = yaml.safe_load(line_config(prompt))
    document["registration"] = {"model_name": MODEL}
    return yaml.safe_dump(document).encode()


def champion_and_canary(world: World) -> tuple[str, str]:
    first = deployed_run(world, one_line("Pack for a hike?"), "line-v1.yaml")
    second = deployed_run(world, one_line("Pack for a swim?"), "line-v2.yaml")
    assert world.state(second) == RunState.CANARY
    return first, second


def version_of(world: World, run: str) -> str:
    record = world.store.get(run)
    assert record is not None and record.model_name == MODEL and record.model_version
    return record.model_version


def test_the_deployed_version_is_champion_and_the_canarys_challenger_until_it_is_promoted() -> None:
    world = World()
    first, second = champion_and_canary(world)
    v1, v2 = version_of(world, first), version_of(world, second)
    assert v1 != v2
    assert world.platform.model_aliases(MODEL) == {"champion": v1, "challenger": v2}
    world.clock.advance(minutes=11)
    world.reconcile()  # the window passed without errors: promoted
    assert world.state(second) == RunState.DEPLOYED
    assert world.platform.model_aliases(MODEL) == {"champion": v2}


def test_a_failed_canary_is_no_challenger_and_the_champion_stays() -> None:
    world = World()
    first, second = champion_and_canary(world)
    world.platform.serve(ENDPOINT, dep(world, second), requests=40, errors=10)
    world.platform.serve(ENDPOINT, dep(world, first), requests=160, errors=1)
    world.clock.advance(minutes=11)
    world.reconcile()
    assert world.state(second) == RunState.DEPLOY_FAILED
    assert world.platform.model_aliases(MODEL) == {"champion": version_of(world, first)}


def test_a_rollback_after_promotion_crowns_the_version_that_serves_again() -> None:
    world = World()
    first, second = champion_and_canary(world)
    world.clock.advance(minutes=11)
    world.reconcile()
    assert world.platform.model_aliases(MODEL) == {"champion": version_of(world, second)}
    rollback_endpoint(world.store, world.platform, ENDPOINT, by="ops")
    assert world.platform.model_aliases(MODEL) == {"champion": version_of(world, first)}
    rollback_endpoint(world.store, world.platform, ENDPOINT, by="ops")  # again: the same
    assert world.platform.model_aliases(MODEL) == {"champion": version_of(world, first)}


def test_a_rollback_during_the_window_withdraws_the_challenger() -> None:
    world = World()
    first, _ = champion_and_canary(world)
    rollback_endpoint(world.store, world.platform, ENDPOINT, by="ops")
    assert world.platform.model_aliases(MODEL) == {"champion": version_of(world, first)}


def test_an_alias_the_registry_refuses_does_not_stop_the_rollout() -> None:
    world = World()
    world.platform.fail_next["set_model_alias"] = PlatformError("the registry is read-only today")
    run = deployed_run(world, one_line("Pack for a hike?"), "line-v1.yaml")
    assert world.state(run) == RunState.DEPLOYED
    assert world.platform.model_aliases(MODEL) == {}
