"""``autopilot approve`` / ``reject``: the decision lands on the run; refusals are one line and exit 1."""

from __future__ import annotations

from typing import Any

import pytest

from autopilot.main import main
from shared.states import RunState
from tests.configs import CONFIG, config_bytes
from tests.functional.shared.world import World


def test_approve_and_reject_from_the_command_line(use_runtime: Any, capsys: pytest.CaptureFixture[str]) -> None:
    world = World()
    use_runtime(store=world.store, platform=world.platform)
    manual = world.drop(config_bytes(deployment={**CONFIG["deployment"], "approval": "manual"}))
    auto = world.drop(name="auto.yaml")
    assert manual is not None and auto is not None
    world.platform.finish_job(manual.run_id)
    world.reconcile()

    assert main(["status", manual.run_id]) == 0
    assert f"awaiting approval: autopilot approve {manual.run_id}" in capsys.readouterr().out
    assert main(["approve", manual.run_id, "--by", "ana"]) == 0
    assert f"run {manual.run_id}: approved by ana" in capsys.readouterr().out
    assert main(["reject", manual.run_id, "--reason", "too late"]) == 1
    assert capsys.readouterr().err.startswith("error: run ")
    assert main(["approve", auto.run_id]) == 1
    assert "deployment.approval is auto" in capsys.readouterr().err
    world.reconcile()
    assert world.state(manual.run_id) == RunState.DEPLOYING


def test_rollback_from_the_command_line(use_runtime: Any, capsys: pytest.CaptureFixture[str]) -> None:
    world = World()
    use_runtime(store=world.store, platform=world.platform)
    line = {**CONFIG["deployment"], "endpoint_name": "ft-line-cli", "observe_minutes": 5}  # type: ignore[dict-item]
    first = world.drop(config_bytes(deployment=line), name="v1.yaml")
    second = world.drop(config_bytes(deployment=line, training={"learning_rate": 1e-5}), name="v2.yaml")
    assert first is not None and second is not None
    world.finish_through_reconcile(first.run_id)
    world.finish_through_reconcile(second.run_id)
    assert world.state(second.run_id) == RunState.CANARY
    assert main(["status", second.run_id]) == 0
    assert "canary: observing at 10% beside" in capsys.readouterr().out

    assert main(["rollback", "ft-line-cli", "--by", "ana"]) == 0
    out = capsys.readouterr().out
    assert f"run {second.run_id} rolled back by ana" in out and "(deploy_failed)" in out
    assert main(["rollback", "ft-line-cli", "--by", "ana"]) == 0  # again: the same answer
    assert main(["rollback", "ft-nope"]) == 1
    assert capsys.readouterr().err.startswith("error: no endpoint 'ft-nope'")
