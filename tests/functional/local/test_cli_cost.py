"""``autopilot status RUN`` shows how long the run's endpoint was up, what that cost at list price, and what
idle cleanup saved, for a run taken through the store's own transitions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autopilot.main import main
from shared.ledger.record import RunRecord
from shared.states import RunState
from tests.configs import CONFIG, training_config
from tests.fakes import FakeClock, make_store

RUN = "demo-1234abcd"


def deploy_then_idle_delete(clock: FakeClock) -> Any:
    store, _, _ = make_store(clock)
    store.create(RUN, config_blob="demo.yaml", config_name="demo", content=b"x", config_etag=None, platform="fake")

    def fill(r: RunRecord) -> None:
        r.config = training_config(deployment={**CONFIG["deployment"], "instance_count": 2})  # type: ignore[dict-item]
        r.endpoint_name, r.deployment_name = "ep-demo", "d-demo"
        r.inference_instance_type = "Standard_NC24ads_A100_v4"

    for state in (RunState.SUBMITTED, RunState.COMPLETED, RunState.REGISTERED, RunState.DEPLOYING):
        store.advance(RUN, state, fill)
    store.advance(RUN, RunState.DEPLOYED)
    clock.advance(hours=5)
    store.advance(
        RUN, RunState.DELETED, lambda r: r.notes.append("endpoint deleted: idle: no request in the last 60 min")
    )
    return store


def test_status_shows_uptime_cost_and_idle_savings(
    use_runtime: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTOPILOT_PRICE_TABLE", raising=False)
    use_runtime(store=deploy_then_idle_delete(FakeClock()))
    assert main(["status", RUN]) == 0
    out = capsys.readouterr().out
    assert "endpoint was up 5 h 0 min" in out and f"about ${3.673 * 2 * 5:,.2f} at $3.673/h" in out
    assert "idle cleanup saves $176.30 per day" in out
    assert main(["status", RUN, "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["endpoint_cost"]
    assert cost["up_hours"] == 5 and cost["instances"] == 2 and cost["idle_saved_usd_per_day"] == 176.3
    # The fake clock began in the past: the endpoint has been gone (and saving) since then, up to now.
    assert cost["idle_saved_usd_so_far"] > 0


def test_a_local_plan_reports_quota_not_applicable_and_counts_the_steps(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(__file__).resolve().parents[3]
    monkeypatch.setenv("AUTOPILOT_DATA_ROOT", str(root / "samples"))
    monkeypatch.setenv("AUTOPILOT_WORKDIR", str(tmp_path))
    monkeypatch.delenv("AUTOPILOT_PRICE_TABLE", raising=False)
    assert main(["plan", str(root / "samples" / "demo-smollm2.yaml"), "--platform", "local"]) == 0
    out = capsys.readouterr().out
    assert "compute.cluster: not applicable: local platform" in out
    assert "deployment.instance_count: not applicable: local platform" in out
    rows = sum(
        1 for line in (root / "samples/ultrachat_sample/train_sft.jsonl").read_bytes().splitlines() if line.strip()
    )
    assert f"60 optimizer steps ({rows:,} rows from data.train" in out and "capped by max_steps 60" in out
    assert "training: local-cpu: no price on record" in out
    assert main(["plan", str(root / "samples" / "demo-smollm2.yaml"), "--platform", "local", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["job"]["params"]["max_steps"] == 60
