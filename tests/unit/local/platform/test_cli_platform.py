"""``autopilot invoke | endpoints | cleanup | prepare-dataset`` against the stateful fake platform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autopilot.main import main
from shared.platform.port import DeploymentState, DeployRequest, ModelRef
from shared.runs import RunStore
from tests.fakes import FakeClock, FakePlatform, make_store

SAMPLE = Path(__file__).resolve().parents[4] / "samples" / "ultrachat_sample"


class KeyedFakePlatform(FakePlatform):
    """The fake platform plus the local platform's key lookup."""

    def endpoint_keys(self, name: str) -> tuple[str, str]:
        return f"primary-{name}", f"secondary-{name}"


@pytest.fixture
def wired(use_runtime: Any) -> tuple[KeyedFakePlatform, RunStore, FakeClock]:
    clock = FakeClock()
    platform = KeyedFakePlatform(clock)
    store, _, _ = make_store(clock)
    use_runtime(store=store, platform=platform)
    return platform, store, clock


def deploy(platform: FakePlatform, name: str, idle_minutes: int = 1) -> None:
    platform.begin_deploy(
        DeployRequest(
            endpoint_name=name,
            deployment_name="d",
            model=ModelRef("m", "1", "models:/m/1"),
            instance_type="local-cpu",
            instance_count=1,
            request_timeout_ms=1000,
            liveness_initial_delay_s=0,
            max_concurrent_requests=1,
            description="",
            tags={
                "autopilot_run_id": f"{name}-run",
                "autopilot_managed": "true",
                "autopilot_idle_after_minutes": str(idle_minutes),
            },
        )
    )
    platform.complete_deployments()


def test_invoke_with_a_message_sends_the_seed_payload(wired: Any, capsys: pytest.CaptureFixture[str]) -> None:
    platform, _, _ = wired
    deploy(platform, "ep-one")
    platform.invoke_answer = {"output": "Autopilot here!"}
    assert main(["invoke", "ep-one", "--message", "hello", "--max-new-tokens", "20"]) == 0
    assert capsys.readouterr().out.strip() == "Autopilot here!"
    sent = platform.invocations[-1]
    assert sent["input_data"]["input_string"] == [[{"role": "user", "content": "hello"}]]
    assert sent["input_data"]["parameters"]["max_new_tokens"] == 20


def test_invoke_with_a_request_file_and_errors(wired: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    platform, _, _ = wired
    deploy(platform, "ep-two")
    request = tmp_path / "sample_score.json"
    payload = {"input_data": {"input_string": [[{"role": "user", "content": "x"}]]}, "params": {}}
    request.write_text(json.dumps(payload))
    assert main(["invoke", "ep-two", "--request-file", str(request), "--raw"]) == 0
    assert json.loads(capsys.readouterr().out) == platform.invoke_answer
    assert platform.invocations[-1] == payload

    request.write_text("{broken")
    assert main(["invoke", "ep-two", "--request-file", str(request)]) == 2  # a usage error
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["invoke", "no-such-endpoint", "--message", "x"]) == 1
    assert "invoke failed" in capsys.readouterr().err


def test_endpoints_lists_activity_and_shows_keys_only_when_asked(
    wired: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    platform, _, _ = wired
    deploy(platform, "ep-three")
    platform.invoke("ep-three", None, {"input_data": {"input_string": [[{"role": "user", "content": "x"}]]}})
    assert main(["endpoints"]) == 0
    out = capsys.readouterr()
    row = next(line for line in out.out.splitlines() if line.startswith("ep-three"))
    assert " 1 " in row and "primary-" not in out.out + out.err

    assert main(["endpoints", "--show-keys"]) == 0
    out = capsys.readouterr()
    assert "ep-three  primary: primary-ep-three" in out.out
    assert "WARNING" in out.err


def test_cleanup_dry_run_then_real(wired: Any, capsys: pytest.CaptureFixture[str]) -> None:
    platform, _, clock = wired
    deploy(platform, "ep-idle", idle_minutes=1)
    clock.advance(minutes=5)
    assert main(["cleanup", "--dry-run"]) == 0
    assert "would delete" in capsys.readouterr().out
    assert platform.endpoints["ep-idle"].deployments["d"] == DeploymentState.SUCCEEDED
    assert main(["cleanup"]) == 0
    assert "deleted" in capsys.readouterr().out
    assert "ep-idle" in platform.deleted_endpoints


def test_prepare_dataset_prints_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare-dataset", "--dataset", str(SAMPLE), "--split-pc", "50", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "train_sft: 160 of 160 rows written" in out
    assert (tmp_path / "out" / "train_sft.jsonl").is_file()
    assert main(["prepare-dataset", "--dataset", str(SAMPLE), "--split-pc", "0", "--out", str(tmp_path)]) == 1
    assert "--split-pc" in capsys.readouterr().err


def test_endpoints_and_cleanup_answer_in_json(wired: Any, capsys: pytest.CaptureFixture[str]) -> None:
    platform, _, clock = wired
    deploy(platform, "ep-json")
    assert main(["endpoints", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "ep-json" and row["requests"] == 0 and row["last_request"] == "never"
    assert "primary" not in json.dumps(row)  # keys never go to JSON
    with pytest.raises(SystemExit) as usage:
        main(["endpoints", "--json", "--show-keys"])  # one or the other
    assert usage.value.code == 2
    capsys.readouterr()
    clock.advance(minutes=5)
    assert main(["cleanup", "--dry-run", "--json"]) == 0
    (decision,) = json.loads(capsys.readouterr().out)
    assert decision["endpoint"] == "ep-json" and decision["action"] == "delete" and decision["dry_run"] is True
    assert [e.name for e in platform.list_endpoints()] == ["ep-json"]  # a dry run deletes nothing
