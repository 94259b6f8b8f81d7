"""``autopilot approve`` / ``reject``: the decision lands on the run; refusals are one line and exit 1."""

from __future__ import annotations

from typing import Any

import pytest

from local.cli.main import main
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
