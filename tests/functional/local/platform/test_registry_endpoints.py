"""Registration and endpoints on the local platform, with real MLflow, real server processes and the tiny model."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from local.common import processes
from local.common.statefiles import read_json, write_json_atomic
from local.platform.serving.state import KEYS_FILE
from shared.exceptions import NotFoundError, NotManagedError, PlatformError
from shared.platform.port import DeploymentState, DeployRequest, ModelRef, RegisterRequest
from shared.services.cleanup import cleanup
from tests.fakes import make_store
from tests.functional.local.platform.support import Workspace

MODEL_NAME = "tiny-functional"
DEPLOY_TIMEOUT_S = 120
SCORE = {
    "input_data": {
        "input_string": [[{"role": "user", "content": "Say hello."}]],
        "parameters": {"temperature": 0.6, "top_p": 0.9, "do_sample": True, "max_new_tokens": 8},
    },
    "params": {},
}


def tags(run: str) -> dict[str, str]:
    return {"autopilot_run_id": run, "autopilot_managed": "true"}


@pytest.fixture(scope="module")
def model(workspace: Workspace, completed_job: str) -> ModelRef:
    request = RegisterRequest(
        job_name=completed_job, model_name=MODEL_NAME, description="test", tags=tags(completed_job)
    )
    return workspace.platform.register_model(request)


def deploy_request(model: ModelRef, endpoint: str, run: str, **overrides: object) -> DeployRequest:
    values: dict[str, object] = {
        "endpoint_name": endpoint,
        "deployment_name": f"d-{run[-8:]}",
        "model": model,
        "instance_type": "local-cpu",
        "instance_count": 1,
        "request_timeout_ms": 60_000,
        "liveness_initial_delay_s": 10,
        "max_concurrent_requests": 2,
        "description": "test",
        "tags": {**tags(run), "autopilot_idle_after_minutes": "1"},
    }
    values.update(overrides)
    return DeployRequest(**values)  # type: ignore[arg-type]


def wait_deployment(workspace: Workspace, request: DeployRequest) -> DeploymentState:
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while True:
        info = workspace.platform.get_deployment(request.endpoint_name, request.deployment_name)
        if info.state != DeploymentState.CREATING or time.monotonic() > deadline:
            return info.state
        time.sleep(0.5)


def test_register_model_is_idempotent_and_posts_model_registered(
    workspace: Workspace, completed_job: str, model: ModelRef
) -> None:
    again = workspace.platform.register_model(
        RegisterRequest(job_name=completed_job, model_name=MODEL_NAME, description="test", tags=tags(completed_job))
    )
    assert again == model
    assert model.id == f"models:/{MODEL_NAME}/{model.version}"
    versions = workspace.platform.registry.client.search_model_versions(f"name='{MODEL_NAME}'")
    assert len(versions) == 1
    assert workspace.platform.get_model(MODEL_NAME, model.version).tags["autopilot_run_id"] == completed_job

    events = workspace.webhook.wait_for("ModelRegistered", count=2)
    assert {e["function"] for e in events} == {"deploy"}
    assert events[0]["data"]["modelName"] == MODEL_NAME and events[0]["data"]["modelVersion"] == model.version
    assert events[0]["data"]["modelTags"]["autopilot_run_id"] == completed_job
    with pytest.raises(NotFoundError):
        workspace.platform.get_model(MODEL_NAME, "99")


def test_register_needs_a_completed_job(workspace: Workspace) -> None:
    with pytest.raises(NotFoundError):
        workspace.platform.register_model(
            RegisterRequest(job_name="no-such-job-00000000", model_name=MODEL_NAME, description="x", tags=tags("x"))
        )


def process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_deploy_invoke_activity_and_delete(
    workspace: Workspace, model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = workspace.platform
    request = deploy_request(model, "ft-functional-0000aaaa", "functional-0000aaaa")
    since = datetime.now(UTC) - timedelta(seconds=1)
    # Secrets the host holds; the server process must not inherit them (it uses none).
    monkeypatch.setenv("AUTOPILOT_WEBHOOK_KEY", "webhook-key-not-for-endpoints")
    monkeypatch.setenv("AzureWebJobsStorage", "DefaultEndpointsProtocol=http;AccountKey=c2VjcmV0")
    platform.begin_deploy(request)
    platform.begin_deploy(request)  # a retry: no second server
    assert workspace.running_pids().count("endpoint-ft-functional-0000aaaa.pid") == 1
    state = platform.endpoints.read_state(request.endpoint_name)
    assert state is not None
    pid, port = state.pid, state.port

    assert wait_deployment(workspace, request) == DeploymentState.SUCCEEDED
    env = process_env(pid)
    assert "AUTOPILOT_WEBHOOK_KEY" not in env and "AzureWebJobsStorage" not in env
    assert not any("webhook-key-not-for-endpoints" in v or "c2VjcmV0" in v for v in env.values())
    platform.begin_deploy(request)
    assert getattr(platform.endpoints.read_state(request.endpoint_name), "pid", None) == pid
    keys = Path(workspace.workdir / "platform" / "endpoints" / request.endpoint_name / KEYS_FILE)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600

    with pytest.raises(PlatformError, match="another run"):
        platform.begin_deploy(deploy_request(model, request.endpoint_name, "other-run-0000ffff"))

    platform.set_traffic(request.endpoint_name, {request.deployment_name: 100})
    answer = platform.invoke(request.endpoint_name, request.deployment_name, SCORE)
    assert isinstance(answer, dict) and isinstance(answer["output"], str)
    with pytest.raises(PlatformError) as exc:
        platform.invoke(request.endpoint_name, None, {"input_data": {"input_string": "nope"}})
    assert exc.value.code == "400"

    activity = platform.endpoint_activity(request.endpoint_name, since)
    assert activity.request_count == 2 and activity.last_request_at is not None
    assert (
        platform.endpoint_activity(request.endpoint_name, datetime.now(UTC) + timedelta(minutes=2)).request_count == 0
    )
    listed = {e.name: e for e in platform.list_endpoints()}
    assert listed[request.endpoint_name].healthy is True
    assert listed[request.endpoint_name].scoring_uri == f"http://127.0.0.1:{port}/score"

    primary, _ = platform.endpoint_keys(request.endpoint_name)
    assert (
        primary not in (workspace.workdir / "platform" / "endpoints" / request.endpoint_name / "server.log").read_text()
    )

    platform.begin_delete_endpoint(request.endpoint_name)
    assert not processes.port_in_use(port)
    assert not (workspace.workdir / "platform" / "endpoints" / request.endpoint_name).exists()
    assert "endpoint-ft-functional-0000aaaa.pid" not in workspace.running_pids()
    platform.begin_delete_endpoint(request.endpoint_name)  # missing is success
    info = platform.get_deployment(request.endpoint_name, request.deployment_name)
    assert info.state == DeploymentState.MISSING


def _kill_server(workspace: Workspace, endpoint: str, sig: signal.Signals = signal.SIGKILL) -> processes.ProcessRecord:
    record = processes.read_pid_file(workspace.workdir / "pids" / f"endpoint-{endpoint}.pid")
    assert record is not None and record.pgid
    os.killpg(record.pgid, sig)
    if sig == signal.SIGKILL:
        deadline = time.monotonic() + 10
        while processes.is_alive(record):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    return record


def _wait_healthy(workspace: Workspace, endpoint: str) -> None:
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while {e.name: e for e in workspace.platform.list_endpoints()}[endpoint].healthy is not True:
        assert time.monotonic() < deadline, processes.log_tail(
            workspace.workdir / "platform" / "endpoints" / endpoint / "server.log", 20
        )
        time.sleep(0.5)


def test_a_killed_server_is_restarted_on_its_port_with_its_keys_and_cleanup_keeps_it(
    workspace: Workspace, model: ModelRef
) -> None:
    # Before: one probe of the dead server and the first cleanup deleted the endpoint for good.
    platform = workspace.platform
    # Not idle for an hour: the only reason cleanup could have to delete it is its health.
    request = deploy_request(
        model, "ft-dies-0000dddd", "dies-0000dddd", tags={**tags("dies-0000dddd"), "autopilot_idle_after_minutes": "60"}
    )
    platform.begin_deploy(request)
    assert wait_deployment(workspace, request) == DeploymentState.SUCCEEDED
    before = platform.endpoints.read_state(request.endpoint_name)
    keys = platform.endpoint_keys(request.endpoint_name)
    assert before is not None
    killed = _kill_server(workspace, request.endpoint_name)

    store, _, _ = make_store()
    decisions = cleanup(store, platform)
    assert [(d.endpoint, d.action) for d in decisions if d.endpoint == request.endpoint_name] == [
        (request.endpoint_name, "skip")
    ]
    after = platform.endpoints.read_state(request.endpoint_name)
    assert after is not None and after.pid != killed.pid and after.restarts == 1
    assert after.port == before.port and platform.endpoint_keys(request.endpoint_name) == keys
    _wait_healthy(workspace, request.endpoint_name)
    platform.set_traffic(request.endpoint_name, {request.deployment_name: 100})
    assert isinstance(platform.invoke(request.endpoint_name, request.deployment_name, SCORE), dict)


def test_down_then_revive_all_brings_every_deployed_endpoint_back(workspace: Workspace, model: ModelRef) -> None:
    # Before: `autopilot down` stopped the servers, `up` did not start them, cleanup then deleted them.
    platform = workspace.platform
    request = deploy_request(model, "ft-revive-0000cccc", "revive-0000cccc")
    platform.begin_deploy(request)
    assert wait_deployment(workspace, request) == DeploymentState.SUCCEEDED
    port = getattr(platform.endpoints.read_state(request.endpoint_name), "port", None)
    keys = platform.endpoint_keys(request.endpoint_name)
    # What `autopilot down` does to an endpoint server: SIGTERM to its group, waiting until it has exited.
    assert processes.stop_pid_file(workspace.workdir / "pids" / f"endpoint-{request.endpoint_name}.pid")
    assert not processes.port_in_use(port)

    assert request.endpoint_name in platform.endpoints.revive_all()
    assert platform.endpoints.revive_all() == []  # running now: nothing to do twice
    state = platform.endpoints.read_state(request.endpoint_name)
    assert state is not None and state.port == port and state.state == DeploymentState.SUCCEEDED
    assert platform.endpoint_keys(request.endpoint_name) == keys
    _wait_healthy(workspace, request.endpoint_name)


def test_a_stalled_server_is_restarted_after_several_failed_probes(workspace: Workspace, model: ModelRef) -> None:
    platform = workspace.platform
    request = deploy_request(model, "ft-stall-0000bbbb", "stall-0000bbbb")
    platform.begin_deploy(request)
    assert wait_deployment(workspace, request) == DeploymentState.SUCCEEDED
    _wait_healthy(workspace, request.endpoint_name)  # it has answered: from now on silence counts
    stalled = _kill_server(workspace, request.endpoint_name, signal.SIGSTOP)
    try:
        # Probes that get no answer are counted; the restart comes once 3 in a row span RESTART_BACKOFF_S.
        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        state = platform.endpoints.read_state(request.endpoint_name)
        while state is not None and not state.restarts:
            assert {e.name: e for e in platform.list_endpoints()}[request.endpoint_name].healthy is False
            state = platform.endpoints.read_state(request.endpoint_name)
            assert state is not None and (state.restarts or state.failed_probes >= 1)
            assert time.monotonic() < deadline
            time.sleep(2)
        assert state is not None and state.restarts == 1 and state.pid != stalled.pid
        assert "health probes" in (state.last_restart_reason or "")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(stalled.pgid, signal.SIGKILL)  # type: ignore[arg-type]
    _wait_healthy(workspace, request.endpoint_name)
    platform.begin_delete_endpoint(request.endpoint_name)


def test_a_server_killed_while_loading_is_started_again(workspace: Workspace, model: ModelRef) -> None:
    # Before: a kill (or `down`) while the model loaded failed the deployment for good (ResourceNotReady).
    platform = workspace.platform
    request = deploy_request(model, "ft-loadkill-0000abab", "loadkill-0000abab")
    platform.begin_deploy(request)
    # Nothing has looked at the endpoint yet, so it is Creating whether or not the server has loaded.
    killed = _kill_server(workspace, request.endpoint_name)
    assert platform.get_deployment(request.endpoint_name, request.deployment_name).state == DeploymentState.CREATING
    state = platform.endpoints.read_state(request.endpoint_name)
    assert state is not None and state.create_restarts == 1 and state.pid != killed.pid
    assert wait_deployment(workspace, request) == DeploymentState.SUCCEEDED
    platform.begin_delete_endpoint(request.endpoint_name)


def test_app_tagged_jobs_and_model_versions_are_listed(
    workspace: Workspace, model: ModelRef, completed_job: str
) -> None:
    jobs = {j.name: j for j in workspace.platform.list_jobs()}
    assert jobs[completed_job].tags["autopilot_run_id"] == completed_job
    assert jobs[completed_job].status.value == "Completed"
    models = {(m.name, m.version): m for m in workspace.platform.list_models()}
    assert models[(model.name, model.version)].tags["autopilot_run_id"] == completed_job


def test_model_that_cannot_load_fails_the_deployment_and_leaves_nothing_running(
    workspace: Workspace, completed_job: str, tmp_path: Path
) -> None:
    platform = workspace.platform
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: nothing\n")
    ref, _ = platform.registry.register(
        name="broken-model", source=broken, mlflow_run_id=None, tags=tags("broken-0000eeee"), description="x"
    )
    request = deploy_request(ref, "ft-broken-0000eeee", "broken-0000eeee")
    platform.begin_deploy(request)
    assert wait_deployment(workspace, request) == DeploymentState.FAILED
    info = platform.get_deployment(request.endpoint_name, request.deployment_name)
    assert info.error_code == "ModelLoadFailed"
    assert info.error_message and "Hugging Face model" in info.error_message
    assert "endpoint-ft-broken-0000eeee.pid" not in workspace.running_pids()
    platform.begin_delete_endpoint(request.endpoint_name)
    assert not (workspace.workdir / "platform" / "endpoints" / request.endpoint_name).exists()


@pytest.mark.parametrize("written_by", ["this app", "something else"])
def test_endpoints_without_the_app_tags_are_never_touched(workspace: Workspace, written_by: str) -> None:
    name = "someone-elses" if written_by == "this app" else "someone-elses-format"
    directory = workspace.workdir / "platform" / "endpoints" / name
    state = {"name": name, "tags": {}, "port": 1, "state": "Succeeded"}
    if written_by == "this app":
        state.update(schema_version=1, created_at=datetime.now(UTC).isoformat())
    write_json_atomic(directory / "state.json", state)
    assert name not in {e.name for e in workspace.platform.list_endpoints()}
    with pytest.raises(NotManagedError):
        workspace.platform.begin_delete_endpoint(name)
    assert read_json(directory / "state.json") == state


def test_several_deployments_behind_one_url_with_weighted_routing_and_per_deployment_counts(
    workspace: Workspace, model: ModelRef
) -> None:
    platform = workspace.platform
    endpoint = "ft-functional-line-0000cccc"
    first = deploy_request(model, endpoint, "line-0000cccc")
    canary = deploy_request(model, endpoint, "line-0000dddd", join_endpoint=True)
    since = datetime.now(UTC) - timedelta(seconds=1)
    platform.begin_deploy(first)
    try:
        assert wait_deployment(workspace, first) == DeploymentState.SUCCEEDED
        platform.set_traffic(endpoint, {first.deployment_name: 100})
        with pytest.raises(PlatformError, match="another run"):
            platform.begin_deploy(deploy_request(model, endpoint, "line-0000dddd"))  # not joining: refused
        platform.begin_deploy(canary)
        platform.begin_deploy(canary)  # a retry
        pid = getattr(platform.endpoints.read_state(endpoint), "pid", None)
        assert wait_deployment(workspace, canary) == DeploymentState.SUCCEEDED
        assert getattr(platform.endpoints.read_state(endpoint), "pid", None) == pid  # same process, same URL
        listed = {d.name: d for d in platform.list_deployments(endpoint)}
        assert listed[canary.deployment_name].traffic == 0 and listed[canary.deployment_name].run_id == "line-0000dddd"

        # Targeted at the canary (the smoke test), then routed by weight: 0% sends it nothing.
        platform.invoke(endpoint, canary.deployment_name, SCORE)
        for _ in range(3):
            platform.invoke(endpoint, None, SCORE)
        with pytest.raises(PlatformError) as exc:
            platform.invoke(endpoint, canary.deployment_name, {"input_data": {"input_string": "nope"}})
        assert exc.value.code == "400"
        metrics = platform.deployment_metrics(endpoint, since)
        assert (metrics[canary.deployment_name].requests, metrics[first.deployment_name].requests) == (2, 3)
        assert metrics[canary.deployment_name].errors == 0  # a 400 is the caller's error, not the model's

        platform.set_traffic(endpoint, {first.deployment_name: 0, canary.deployment_name: 100})
        for _ in range(2):
            platform.invoke(endpoint, None, SCORE)
        metrics = platform.deployment_metrics(endpoint, since)
        assert (metrics[canary.deployment_name].requests, metrics[first.deployment_name].requests) == (4, 3)
        assert platform.endpoint_activity(endpoint, since).request_count == 7  # the endpoint as a whole

        with pytest.raises(PlatformError) as refused:
            platform.begin_delete_deployment(endpoint, canary.deployment_name)
        assert refused.value.code == "DeploymentHasTraffic"
        platform.begin_delete_deployment(endpoint, first.deployment_name)
        platform.begin_delete_deployment(endpoint, first.deployment_name)  # missing is success
        assert [d.name for d in platform.list_deployments(endpoint)] == [canary.deployment_name]
        assert platform.get_deployment(endpoint, first.deployment_name).state == DeploymentState.MISSING
        with pytest.raises(NotFoundError):
            platform.invoke(endpoint, first.deployment_name, SCORE)
        platform.invoke(endpoint, None, SCORE)
    finally:
        platform.begin_delete_endpoint(endpoint)
