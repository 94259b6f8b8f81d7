"""The azd hooks run end to end against a stand-in ``az`` on PATH (no Azure here): what they would PUT and
DELETE, in which order, and that the function keys never reach the command line or the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.subscriptions import SUBSCRIPTIONS
from tests.infra.infra_files import INFRA, roles

KEYS = {"eventgrid_extension": "EG-KEY-secret-1", "blobs_extension": "BLOB-KEY-secret-2"}
WORKSPACE = "/subscriptions/sub-1/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws"
TOPIC = "/subscriptions/sub-1/resourceGroups/rg-dev/providers/Microsoft.EventGrid/systemTopics/evgt-mlw-x"

# Records each call (argv, and the body file's content for --body @file) and answers what the hooks ask.
FAKE_AZ = """#!{python}
import json, os, sys
args = sys.argv[1:]
call = {{"argv": args}}
if "--body" in args:
    path = args[args.index("--body") + 1][1:]
    call["body"] = json.load(open(path))
    call["body_mode"] = oct(os.stat(path).st_mode & 0o777)
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(call) + "\\n")
if args[:3] == ["functionapp", "keys", "list"]:
    print(os.environ["FAKE_AZ_KEYS"])
elif args[:2] == ["provider", "show"]:
    print(os.environ.get("FAKE_AZ_PROVIDER", "Registered"))
"""


@pytest.fixture
def fake_az(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ.format(python=sys.executable), encoding="utf-8")
    az.chmod(0o755)
    return tmp_path


def run_hook(tmp: Path, hook: str, **extra: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    log = tmp / "az.log"
    env = {
        "PATH": f"{tmp / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AZ_LOG": str(log),
        "FAKE_AZ_KEYS": json.dumps(KEYS),
        "AZURE_SUBSCRIPTION_ID": "sub-1",
        "AZURE_RESOURCE_GROUP": "rg-dev",
        "AZURE_FUNCTION_APP_NAME": "func-x",
        "AZURE_FUNCTION_APP_HOSTNAME": "func-x.azurewebsites.net",
        "AZURE_STORAGE_TOPIC_NAME": "evgt-st-x",
        "AUTOPILOT_CONFIG_CONTAINER": "training-configs",
        "AUTOPILOT_IDENTITY_PRINCIPAL_ID": "principal-1",
        "AZUREML_WORKSPACE_ID": WORKSPACE,
        "AZUREML_WORKSPACE_TOPIC_ID": TOPIC,
        **extra,
    }
    done = subprocess.run(
        [sys.executable, str(INFRA / "hooks" / "azd_hooks.py"), hook],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
    return done, calls


def rest_calls(calls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["argv"][2], c["argv"][4].split("?")[0]) for c in calls if c["argv"][0] == "rest"]


def test_postdeploy_puts_the_declared_subscriptions_and_the_config_blob_one_keys_only_in_private_bodies(
    fake_az: Path,
) -> None:
    done, calls = run_hook(fake_az, "postdeploy")
    assert done.returncode == 0, done.stderr
    expected = [f"https://management.azure.com{TOPIC}/eventSubscriptions/{s.name}" for s in SUBSCRIPTIONS]
    storage_topic = "/subscriptions/sub-1/resourceGroups/rg-dev/providers/Microsoft.EventGrid/systemTopics/evgt-st-x"
    expected.append(f"https://management.azure.com{storage_topic}/eventSubscriptions/autopilot-config-blobs")
    assert rest_calls(calls) == [("put", url) for url in expected]
    bodies = [c for c in calls if "body" in c]
    assert all(c["body_mode"] == "0o600" for c in bodies)
    urls = [c["body"]["properties"]["destination"]["properties"]["endpointUrl"] for c in bodies]
    assert urls[0].endswith("functionName=register&code=EG-KEY-secret-1")
    assert urls[-1].endswith("functionName=Host.Functions.submit&code=BLOB-KEY-secret-2")
    for secret in KEYS.values():
        assert secret not in done.stdout + done.stderr
        assert not any(secret in " ".join(c["argv"]) for c in calls)


def test_postprovision_grants_the_roles_outside_the_group_and_predown_deletes_the_same_ones(fake_az: Path) -> None:
    done, calls = run_hook(fake_az, "postprovision")
    assert done.returncode == 0, done.stderr
    granted = rest_calls(calls)
    outside = [r for r in roles() if r["scope"] in {"workspace", "subscription"}]
    assert [m for m, _ in granted] == ["put"] * len(outside)
    assert granted[0][1].startswith(f"https://management.azure.com{WORKSPACE}/providers/Microsoft.Authorization/")
    assert granted[1][1].startswith(
        "https://management.azure.com/subscriptions/sub-1/providers/Microsoft.Authorization/"
    )
    (fake_az / "az.log").unlink()
    done, calls = run_hook(fake_az, "predown", AZUREML_WORKSPACE_TOPIC_OWNED="true")
    assert done.returncode == 0, done.stderr
    assert rest_calls(calls) == [("delete", url) for _, url in granted]  # the topic is azd's: left to azd down


def test_predown_removes_the_subscriptions_from_a_topic_azd_did_not_make(fake_az: Path) -> None:
    done, calls = run_hook(fake_az, "predown", AZUREML_WORKSPACE_TOPIC_OWNED="false")
    assert done.returncode == 0, done.stderr
    deleted = [url for method, url in rest_calls(calls) if method == "delete"]
    assert deleted[: len(SUBSCRIPTIONS)] == [
        f"https://management.azure.com{TOPIC}/eventSubscriptions/{s.name}" for s in SUBSCRIPTIONS
    ]


def test_preprovision_stops_with_the_command_when_event_grid_is_not_registered(fake_az: Path) -> None:
    done, _ = run_hook(fake_az, "preprovision", FAKE_AZ_PROVIDER="NotRegistered")
    assert done.returncode == 1
    assert "az provider register -n Microsoft.EventGrid" in done.stderr
    assert run_hook(fake_az, "preprovision")[0].returncode == 0


def test_a_missing_azd_value_is_named(fake_az: Path) -> None:
    done, _ = run_hook(fake_az, "postdeploy", AZUREML_WORKSPACE_TOPIC_ID="")
    assert done.returncode == 1 and "AZUREML_WORKSPACE_TOPIC_ID is not set" in done.stderr
