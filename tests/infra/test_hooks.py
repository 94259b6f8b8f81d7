"""The azd hooks end to end against a stand-in ``az`` on PATH (tests/infra/fake_az.py: ARM as state, recorded
command lines, injected failures; no Azure here): what they PUT, DELETE and cancel, in which order, in which
subscription, what they retry, and that the function keys never reach the command line or the output.

Most tests run the hook as azd does, a separate ``python3`` with no packages (``-S``: no site-packages). The
ones that retry run it in this process with its ``time`` replaced, so the waits are recorded, not slept."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.subscriptions import SUBSCRIPTIONS
from tests.infra.infra_files import INFRA, ROOT, hooks, roles

SUB = "sub-1"
ARM = "https://management.azure.com"
KEYS = {"eventgrid_extension": "EG-KEY-secret-1", "blobs_extension": "BLOB-KEY-secret-2"}
WORKSPACE = f"/subscriptions/{SUB}/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws"
TOPIC = f"/subscriptions/{SUB}/resourceGroups/rg-dev/providers/Microsoft.EventGrid/systemTopics/evgt-mlw-x"
STORAGE_TOPIC = f"/subscriptions/{SUB}/resourceGroups/rg-dev/providers/Microsoft.EventGrid/systemTopics/evgt-st-x"
A100 = "Standard_NC24ads_A100_v4"  # $3.673/h in shared/prices.json: $88.15 a day
RECORDINGS = ROOT / "tests" / "fixtures" / "azureml" / "recordings"
AZD_ENV = {
    "AZURE_SUBSCRIPTION_ID": SUB,
    "AZURE_RESOURCE_GROUP": "rg-dev",
    "AZURE_FUNCTION_APP_NAME": "func-x",
    "AZURE_FUNCTION_APP_HOSTNAME": "func-x.azurewebsites.net",
    "AZURE_STORAGE_TOPIC_NAME": "evgt-st-x",
    "AUTOPILOT_CONFIG_CONTAINER": "training-configs",
    "AUTOPILOT_IDENTITY_PRINCIPAL_ID": "principal-1",
    "AZUREML_WORKSPACE_ID": WORKSPACE,
    "AZUREML_WORKSPACE_TOPIC_ID": TOPIC,
}
# Read by the hooks when set; each test starts without them.
OPTIONAL = (
    "AUTOPILOT_DEPLOYER_PRINCIPAL_ID",
    "AUTOPILOT_DEPLOYER_PRINCIPAL_TYPE",
    "AUTOPILOT_DOWN_WORKSPACE_RESOURCES",
    "AZUREML_WORKSPACE_TOPIC_OWNED",
    "AUTOPILOT_PRICE_TABLE",
)
MANAGED = {"autopilot_managed": "true", "autopilot_run_id": "run-a-1234abcd"}


def endpoint(name: str, tags: dict[str, str], sku: str = A100, capacity: int = 1) -> dict[str, Any]:
    resource_id = f"{WORKSPACE}/onlineEndpoints/{name}"
    deployment: dict[str, Any] = {
        "id": f"{resource_id}/deployments/blue",
        "name": "blue",
        "sku": {"name": "Default", "capacity": capacity},
        "properties": {"instanceType": sku},
    }
    return {resource_id: {"id": resource_id, "name": name, "tags": tags}, deployment["id"]: deployment}


def job(name: str, status: str, tags: dict[str, str], inputs: dict[str, Any]) -> dict[str, Any]:
    resource_id = f"{WORKSPACE}/jobs/{name}"
    node = {"inputs": {k: {"job_input_type": "literal", "value": v} for k, v in inputs.items()}}
    body = {"status": status, "tags": tags, "jobType": "Pipeline", "jobs": {"chat_completion_pipeline": node}}
    return {resource_id: {"id": resource_id, "name": name, "properties": body}}


def workspace_resources() -> dict[str, Any]:
    """The app's endpoints and jobs, and things that are not the app's."""
    other_run = {"autopilot_managed": "true", "autopilot_run_id": "run-b-5678abcd"}
    compute = f"{WORKSPACE}/computes/gpu-cluster"
    model = f"{WORKSPACE}/models/chat/versions/439041102"
    return {
        **endpoint("ep-a", MANAGED),
        **endpoint("ep-b", other_run, capacity=2),
        **endpoint("ep-mine", {}),
        **endpoint("ep-half", {"autopilot_managed": "true"}),  # no run id: not the app's (shared.naming)
        **job("run-a-1234abcd", "Running", MANAGED, {"compute_finetune": "gpu-cluster", "num_nodes_finetune": 2}),
        **job("run-c-0000abcd", "Queued", MANAGED, {"compute_finetune": "serverless", "instance_type_finetune": A100}),
        **job("run-d-1111abcd", "Completed", MANAGED, {"compute_finetune": "gpu-cluster"}),
        **job("someone-else", "Running", {}, {"compute_finetune": "gpu-cluster"}),
        compute: {"id": compute, "name": "gpu-cluster", "properties": {"properties": {"vmSize": A100}}},
        model: {"id": model, "name": "439041102", "properties": {"tags": MANAGED}},
    }


@dataclass
class FakeAz:
    root: Path
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def save(self) -> None:
        (self.root / "state.json").write_text(json.dumps(self.state), encoding="utf-8")

    def load(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.root / "state.json").read_text(encoding="utf-8"))
        return loaded

    def calls(self) -> list[dict[str, Any]]:
        log = self.root / "az.log"
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []

    def forget_calls(self) -> None:
        (self.root / "az.log").unlink(missing_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "FAKE_AZ_LOG": str(self.root / "az.log"),
            "FAKE_AZ_STATE": str(self.root / "state.json"),
            **AZD_ENV,
            **extra,
        }


@pytest.fixture
def fake_az(tmp_path: Path) -> FakeAz:
    fake = FakeAz(tmp_path, {"keys": [KEYS], "apps": ["func-x"], "provider": "Registered", "resources": {}})
    fake.bin.mkdir()
    az = fake.bin / "az"
    az.write_text(f'#!/bin/sh\nexec {sys.executable} -S {Path(__file__).with_name("fake_az.py")} "$@"\n')
    az.chmod(0o755)
    fake.save()
    return fake


def run_hook(fake: FakeAz, hook: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """The hook as azd runs it: its own bare ``python3`` (no site-packages), the azd environment, az on PATH."""
    return subprocess.run(
        [sys.executable, "-S", str(INFRA / "hooks" / "azd_hooks.py"), hook],
        env=fake.env(**extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class InProcess:
    returncode: int
    stdout: str
    stderr: str
    sleeps: list[float]


class _Time:
    """What the hooks use of ``time``: the waits, recorded instead of slept."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def run_in_process(fake: FakeAz, hook: str, monkeypatch: pytest.MonkeyPatch, **extra: str) -> InProcess:
    module = hooks()
    for name in OPTIONAL:
        monkeypatch.delenv(name, raising=False)
    for name, value in fake.env(**extra).items():
        monkeypatch.setenv(name, value)
    clock = _Time()
    monkeypatch.setattr(module, "time", clock)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = module.main([hook])
    return InProcess(code, out.getvalue(), err.getvalue(), clock.sleeps)


def rest_calls(calls: list[dict[str, Any]], *methods: str) -> list[tuple[str, str]]:
    """(method, URL without query) of each ``az rest`` call, only ``methods`` when given."""
    found = [
        (c["argv"][c["argv"].index("--method") + 1], c["argv"][c["argv"].index("--url") + 1])
        for c in calls
        if c["argv"][0] == "rest"
    ]
    return [(m, u.split("?")[0]) for m, u in found if not methods or m in methods]


def subscription_urls() -> list[str]:
    urls = [f"{ARM}{TOPIC}/eventSubscriptions/{s.name}" for s in SUBSCRIPTIONS]
    return [*urls, f"{ARM}{STORAGE_TOPIC}/eventSubscriptions/autopilot-config-blobs"]


# -- postdeploy


def test_postdeploy_puts_each_subscription_and_reads_it_back_keys_only_in_private_bodies(fake_az: FakeAz) -> None:
    done = run_hook(fake_az, "postdeploy")
    assert done.returncode == 0, done.stderr
    expected = subscription_urls()
    assert rest_calls(fake_az.calls(), "put") == [("put", url) for url in expected]
    # Each PUT is followed by a GET of the same subscription, before the next PUT.
    sequence = rest_calls(fake_az.calls(), "put", "get")
    assert sequence == [step for url in expected for step in (("put", url), ("get", url))]
    bodies = [c for c in fake_az.calls() if "body" in c]
    assert all(c["body_mode"] == "0o600" for c in bodies)
    urls = [c["body"]["properties"]["destination"]["properties"]["endpointUrl"] for c in bodies]
    assert urls[0].endswith("functionName=register&code=EG-KEY-secret-1")
    assert urls[-1].endswith("functionName=Host.Functions.submit&code=BLOB-KEY-secret-2")
    for secret in KEYS.values():
        assert secret not in done.stdout + done.stderr
        assert not any(secret in " ".join(c["argv"]) for c in fake_az.calls())


def test_list_keys_failures_and_missing_keys_are_retried_with_backoff(
    fake_az: FakeAz, monkeypatch: pytest.MonkeyPatch
) -> None:
    unavailable = "(ServiceUnavailable) The service is unavailable. Code: ServiceUnavailable"
    fake_az.state["fail"] = {"functionapp keys list": [unavailable, unavailable]}
    fake_az.state["keys"] = [{"masterKey": "m"}, {"eventgrid_extension": "x"}, KEYS]
    fake_az.save()
    done = run_in_process(fake_az, "postdeploy", monkeypatch)
    assert done.returncode == 0, done.stderr
    keys_calls = [c for c in fake_az.calls() if c["argv"][:3] == ["functionapp", "keys", "list"]]
    assert len(keys_calls) == 5  # two failures, two answers without both keys, then the keys
    assert done.sleeps == [5, 10, 20, 40]  # the backoff doubles
    assert len(rest_calls(fake_az.calls(), "put")) == len(subscription_urls())


def test_list_keys_gives_up_after_its_tries_and_says_what_to_do(
    fake_az: FakeAz, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_az.state["keys"] = [{}]
    fake_az.save()
    done = run_in_process(fake_az, "postdeploy", monkeypatch)
    assert done.returncode == 1
    assert "azd hooks run postdeploy" in done.stderr and "eventgrid_extension" in done.stderr
    assert len(done.sleeps) == hooks().KEY_ATTEMPTS - 1 and max(done.sleeps) == 60
    assert rest_calls(fake_az.calls(), "put") == []


def test_a_subscription_whose_provisioning_fails_fails_the_hook_with_its_error(
    fake_az: FakeAz, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = SUBSCRIPTIONS[0].name
    fake_az.state["provisioning"] = {failing: ["Creating", "AwaitingManualAction", "Failed"]}
    fake_az.save()
    done = run_in_process(fake_az, "postdeploy", monkeypatch)
    assert done.returncode == 1
    assert f"event subscription {failing} is Failed" in done.stderr
    assert (
        "validation handshake with https://func-x.azurewebsites.net/runtime/webhooks/eventgrid did not pass"
        in done.stderr
    )
    assert KEYS["eventgrid_extension"] not in done.stderr + done.stdout
    assert rest_calls(fake_az.calls(), "put") == [("put", subscription_urls()[0])]  # nothing after it
    assert done.sleeps == [5, 5]


def test_provisioning_is_awaited_until_it_succeeds(fake_az: FakeAz, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_az.state["provisioning"] = {SUBSCRIPTIONS[1].name: ["Creating", "Creating", "Succeeded"]}
    fake_az.save()
    done = run_in_process(fake_az, "postdeploy", monkeypatch)
    assert done.returncode == 0, done.stderr
    gets = [url for method, url in rest_calls(fake_az.calls(), "get")]
    assert gets.count(f"{ARM}{TOPIC}/eventSubscriptions/{SUBSCRIPTIONS[1].name}") == 3
    assert done.sleeps == [5, 5]


# -- every call in azd's subscription


@pytest.mark.parametrize("hook", ["preprovision", "postprovision", "postdeploy", "predown"])
def test_every_az_call_names_azds_subscription(fake_az: FakeAz, hook: str) -> None:
    fake_az.state["resources"] = workspace_resources()
    fake_az.save()
    done = run_hook(fake_az, hook, AUTOPILOT_DEPLOYER_PRINCIPAL_ID="person-1", AZUREML_WORKSPACE_TOPIC_OWNED="false")
    assert done.returncode == 0, done.stderr
    calls = fake_az.calls()
    assert calls
    for call in calls:
        argv = call["argv"]
        if argv[0] == "rest":  # az rest takes no --subscription: it reads the subscription from the ARM URL
            url = argv[argv.index("--url") + 1]
            assert url.startswith(f"{ARM}/subscriptions/{SUB}/"), argv
        else:
            assert argv[argv.index("--subscription") + 1] == SUB, argv


def test_a_resource_outside_azds_subscription_is_refused(fake_az: FakeAz) -> None:
    other = WORKSPACE.replace(SUB, "sub-2")
    done = run_hook(fake_az, "postprovision", AZUREML_WORKSPACE_ID=other)
    assert done.returncode == 1 and "not in azd's subscription sub-1" in done.stderr
    assert rest_calls(fake_az.calls(), "put") == []


# -- roles


def test_postprovision_grants_the_roles_outside_the_group_and_predown_deletes_the_same_ones(fake_az: FakeAz) -> None:
    done = run_hook(fake_az, "postprovision", AUTOPILOT_DEPLOYER_PRINCIPAL_ID="person-1")
    assert done.returncode == 0, done.stderr
    granted = rest_calls(fake_az.calls(), "put")
    bodies = [c["body"]["properties"] for c in fake_az.calls() if "body" in c]
    app_roles = [r for r in roles() if r["scope"] in {"workspace", "subscription"}]
    deployer_roles = [r for r in roles("deployerRoles") if r["scope"] in {"workspace", "subscription"}]
    assert len(granted) == len(app_roles) + len(deployer_roles)
    assert [(b["principalId"], b["principalType"]) for b in bodies] == [("principal-1", "ServicePrincipal")] * len(
        app_roles
    ) + [("person-1", "User")] * len(deployer_roles)
    assert granted[0][1].startswith(f"{ARM}{WORKSPACE}/providers/Microsoft.Authorization/roleAssignments/")
    assert granted[1][1].startswith(f"{ARM}/subscriptions/{SUB}/providers/Microsoft.Authorization/")
    fake_az.forget_calls()
    done = run_hook(
        fake_az, "predown", AUTOPILOT_DEPLOYER_PRINCIPAL_ID="person-1", AZUREML_WORKSPACE_TOPIC_OWNED="true"
    )
    assert done.returncode == 0, done.stderr
    removed = [(m, u) for m, u in rest_calls(fake_az.calls(), "delete") if "roleAssignments" in u]
    assert removed == [("delete", url) for _, url in granted]  # the topic is azd's: left to azd down


def test_without_a_deployer_only_the_app_identity_gets_roles(fake_az: FakeAz) -> None:
    done = run_hook(fake_az, "postprovision", AUTOPILOT_DEPLOYER_PRINCIPAL_ID="")
    assert done.returncode == 0, done.stderr
    principals = {c["body"]["properties"]["principalId"] for c in fake_az.calls() if "body" in c}
    assert principals == {"principal-1"}


def test_predown_removes_the_subscriptions_from_a_topic_azd_did_not_make(fake_az: FakeAz) -> None:
    fake_az.state["resources"] = {f"{TOPIC}/eventSubscriptions/{s.name}": {} for s in SUBSCRIPTIONS}
    fake_az.save()
    done = run_hook(fake_az, "predown", AZUREML_WORKSPACE_TOPIC_OWNED="false")
    assert done.returncode == 0, done.stderr
    deleted = [url for _, url in rest_calls(fake_az.calls(), "delete") if "/eventSubscriptions/" in url]
    assert deleted == [f"{ARM}{TOPIC}/eventSubscriptions/{s.name}" for s in SUBSCRIPTIONS]
    assert fake_az.load()["resources"] == {}


# -- predown: nothing left billing


def _workspace_effects(calls: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    deleted = {u.rsplit("/", 1)[-1] for m, u in rest_calls(calls, "delete") if "/onlineEndpoints/" in u}
    canceled = {u.rsplit("/", 2)[-2] for m, u in rest_calls(calls, "post") if u.endswith("/cancel")}
    return deleted, canceled


def test_predown_deletes_the_apps_endpoints_and_cancels_its_running_jobs_and_nothing_else(fake_az: FakeAz) -> None:
    fake_az.state["resources"] = workspace_resources()
    fake_az.save()
    done = run_hook(fake_az, "predown")
    assert done.returncode == 0, done.stderr
    deleted, canceled = _workspace_effects(fake_az.calls())
    assert deleted == {"ep-a", "ep-b"}
    assert canceled == {"run-a-1234abcd", "run-c-0000abcd"}
    left = fake_az.load()["resources"]
    for untouched in ("onlineEndpoints/ep-mine", "onlineEndpoints/ep-half", "models/chat/versions/439041102"):
        assert f"{WORKSPACE}/{untouched}" in left
    assert left[f"{WORKSPACE}/jobs/someone-else"]["properties"]["status"] == "Running"
    assert left[f"{WORKSPACE}/jobs/run-d-1111abcd"]["properties"]["status"] == "Completed"
    # The cost of each, from the price table: 1 and 2 A100 instances; 2 nodes and 1 serverless A100.
    assert "endpoint ep-a: 1 x Standard_NC24ads_A100_v4, $88.15/day" in done.stdout
    assert "endpoint ep-b: 2 x Standard_NC24ads_A100_v4, $176.30/day" in done.stdout
    assert "job run-a-1234abcd: Running on gpu-cluster (Standard_NC24ads_A100_v4 x 2), $176.30/day" in done.stdout
    assert "job run-c-0000abcd: Queued on serverless (Standard_NC24ads_A100_v4 x 1), $88.15/day" in done.stdout
    assert "model versions the app registered stay" in done.stdout
    # The app is stopped first, so nothing new starts while the workspace is cleared.
    argvs = [c["argv"] for c in fake_az.calls()]
    stop = argvs.index(next(a for a in argvs if a[:2] == ["functionapp", "stop"]))
    first_list = next(i for i, a in enumerate(argvs) if a[0] == "rest" and "onlineEndpoints" in " ".join(a))
    assert stop < first_list


def test_a_real_pipeline_job_is_read_for_its_compute(fake_az: FakeAz) -> None:
    """A pipeline job as ARM returned it (the azure-ai-ml SDK's recording, tests/fixtures/azureml/recordings), with
    the app's tags on it and its id in the workspace: no fine-tune inputs, so its own computeId names the VM."""
    recording = json.loads((RECORDINGS / "pipeline_job_get.json").read_text(encoding="utf-8"))
    body = recording["Entries"][0]["ResponseBody"]
    assert body["properties"]["status"] == "Running" and body["properties"]["jobType"] == "Pipeline"
    job_id = f"{WORKSPACE}/jobs/{body['name']}"
    body = {**body, "id": job_id, "properties": {**body["properties"], "tags": MANAGED}}
    compute = f"{WORKSPACE}/computes/cpu-cluster"
    fake_az.state["resources"] = {
        job_id: body,
        compute: {"id": compute, "properties": {"properties": {"vmSize": "Standard_DS3_v2"}}},
    }
    fake_az.save()
    done = run_hook(fake_az, "predown")
    assert done.returncode == 0, done.stderr
    assert (
        f"job {body['name']}: Running on" in done.stdout and "(Standard_DS3_v2 x 1), no price on record" in done.stdout
    )
    assert _workspace_effects(fake_az.calls()) == (set(), {body["name"]})


def test_predown_keep_leaves_them_and_prints_how_to_remove_them(fake_az: FakeAz) -> None:
    fake_az.state["resources"] = workspace_resources()
    fake_az.save()
    done = run_hook(fake_az, "predown", AUTOPILOT_DOWN_WORKSPACE_RESOURCES="keep")
    assert done.returncode == 0, done.stderr
    assert _workspace_effects(fake_az.calls()) == (set(), set())
    where = f"--resource-group rg-ml --workspace-name ws --subscription {SUB}"
    assert f"az ml online-endpoint delete --name ep-a {where} --yes" in done.stdout
    assert f"az ml online-endpoint delete --name ep-b {where} --yes" in done.stdout
    assert f"az ml job cancel --name run-a-1234abcd {where}" in done.stdout
    assert "ep-mine" not in done.stdout and "someone-else" not in done.stdout
    assert "kept: $528.91/day until removed" in done.stdout  # 88.152 + 176.304 + 176.304 + 88.152


def test_a_rerun_of_predown_succeeds(fake_az: FakeAz) -> None:
    fake_az.state["resources"] = workspace_resources()
    fake_az.state["fail"] = {f"rest delete {WORKSPACE}/onlineEndpoints/ep-b": ["(Conflict) The endpoint is busy"]}
    fake_az.save()
    first = run_hook(fake_az, "predown", AUTOPILOT_DEPLOYER_PRINCIPAL_ID="person-1")
    assert first.returncode == 1 and "Conflict" in first.stderr  # azd down stops here; nothing is lost
    second = run_hook(fake_az, "predown", AUTOPILOT_DEPLOYER_PRINCIPAL_ID="person-1")
    assert second.returncode == 0, second.stderr
    assert f"{WORKSPACE}/onlineEndpoints/ep-b" not in fake_az.load()["resources"]
    # After azd down deleted the group (the app is gone) and everything else is gone too, it still succeeds.
    fake_az.state = fake_az.load()
    fake_az.state["apps"] = []
    fake_az.save()
    third = run_hook(
        fake_az, "predown", AUTOPILOT_DEPLOYER_PRINCIPAL_ID="person-1", AZUREML_WORKSPACE_TOPIC_OWNED="false"
    )
    assert third.returncode == 0, third.stderr
    assert "func-x: already gone" in third.stdout


def test_lists_are_followed_across_pages(fake_az: FakeAz) -> None:
    fake_az.state["resources"] = workspace_resources()
    fake_az.state["page_size"] = 1
    fake_az.save()
    done = run_hook(fake_az, "predown")
    assert done.returncode == 0, done.stderr
    assert _workspace_effects(fake_az.calls()) == ({"ep-a", "ep-b"}, {"run-a-1234abcd", "run-c-0000abcd"})


def test_a_bad_down_setting_is_named_before_anything_is_done(fake_az: FakeAz) -> None:
    fake_az.state["resources"] = workspace_resources()
    fake_az.save()
    done = run_hook(fake_az, "predown", AUTOPILOT_DOWN_WORKSPACE_RESOURCES="maybe")
    assert done.returncode == 1
    assert "AUTOPILOT_DOWN_WORKSPACE_RESOURCES must be one of delete, keep, not 'maybe'" in done.stderr
    assert fake_az.calls() == []


# -- preprovision and missing values


def test_preprovision_stops_with_the_command_when_event_grid_is_not_registered(fake_az: FakeAz) -> None:
    fake_az.state["provider"] = "NotRegistered"
    fake_az.save()
    done = run_hook(fake_az, "preprovision")
    assert done.returncode == 1
    assert f"az provider register -n Microsoft.EventGrid --subscription {SUB}" in done.stderr
    fake_az.state["provider"] = "Registered"
    fake_az.save()
    assert run_hook(fake_az, "preprovision").returncode == 0


def test_a_missing_azd_value_is_named(fake_az: FakeAz) -> None:
    done = run_hook(fake_az, "postdeploy", AZUREML_WORKSPACE_TOPIC_ID="")
    assert done.returncode == 1 and "AZUREML_WORKSPACE_TOPIC_ID is not set" in done.stderr
