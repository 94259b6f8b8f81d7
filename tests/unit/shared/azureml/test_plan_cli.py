"""``autopilot plan``: the seed sample previewed offline, rejections as one line per reason, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from local.cli.main import main
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.conftest import COMPONENT_SPEC, MODEL_TAGS, SEED_SAMPLE

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

OFFLINE = ["--platform", "azureml", "--component", str(COMPONENT_SPEC), "--model-tags", str(MODEL_TAGS)]


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AUTOPILOT_PLATFORM", "AZUREML_WORKSPACE_NAME", "AUTOPILOT_CONFIG_CONTAINER", "AZUREML_REGISTRY"):
        monkeypatch.delenv(key, raising=False)


def write_config(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(SEED_SAMPLE.read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        data[section][key] = value
    path = tmp_path / "phi3-ultrachat.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_plan_prints_the_seed_job_with_lora_and_deepspeed_stage_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(SEED_SAMPLE), *OFFLINE]) == 0
    out = capsys.readouterr().out
    assert "Effective parameters (origin: default < model < config)" in out
    assert "precision                    16           model" in out
    assert "learning_rate                5e-06        config" in out
    assert "offline: cluster 'gpu-cluster-a100' not checked" in out
    assert "inference: Standard_NC24ads_A100_v4: accepted" in out

    job = yaml.safe_load(out.split("\n---\n", 1)[1])
    node = job["jobs"]["chat_completion_pipeline"]
    assert node["component"] == "azureml://registries/azureml/components/chat_completion_pipeline/versions/0.0.85"
    assert (node["inputs"]["apply_lora"], node["inputs"]["apply_deepspeed"], node["inputs"]["deepspeed_stage"]) == (
        "true",
        "true",
        "2",
    )
    assert node["inputs"]["compute_finetune"] == "gpu-cluster-a100"
    assert job["display_name"] == "Phi-3-mini-4k-instruct-ultrachat-bs1-cosine-ds2-lora-save_limit-1-seqlen-1"
    assert job["name"].startswith("phi3-ultrachat-")
    assert job["tags"]["autopilot_managed"] == "true"


def test_plan_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(SEED_SAMPLE), *OFFLINE, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["effective_params"]["apply_lora"] == {"value": True, "source": "config"}
    assert plan["effective_params"]["deepspeed_stage"] == {"value": 2, "source": "config"}
    assert plan["job"]["jobs"]["chat_completion_pipeline"]["inputs"]["deepspeed_stage"] == "2"
    assert plan["names"]["job"] == plan["run_id"] == plan["job"]["name"]
    assert plan["compute"]["gpus_per_node"] == 1


def test_rejections_exit_1_with_one_line_per_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, deployment__instance_type="Standard_NC6", data__train="data/train.jsonl")
    assert main(["plan", str(config), *OFFLINE]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "A submit would be rejected (2 reasons):"
    assert err[1].startswith(
        "  deployment.instance_type: Standard_NC6 is not in the model's inference_compute_allow_list"
    )
    assert err[2].startswith("  data.train: on Azure ML give a datastore URI")


def test_serverless_sku_outside_the_allow_list_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, compute__cluster="serverless")
    data = yaml.safe_load(config.read_text())
    data["compute"]["instance_type"] = "Standard_NC4as_T4_v3"
    config.write_text(yaml.safe_dump(data))
    assert main(["plan", str(config), *OFFLINE, "--json"]) == 1
    rejected = json.loads(capsys.readouterr().out)["rejected"]
    assert [r["path"] for r in rejected] == ["compute.instance_type"]


def test_hostile_model_tags_are_a_rejection_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tags = json.loads(MODEL_TAGS.read_text())
    tags["tags"]["finetune_compute_allow_list"] = "[" * 300 + "]" * 300
    hostile = tmp_path / "tags.json"
    hostile.write_text(json.dumps(tags))
    args = ["plan", str(SEED_SAMPLE), "--platform", "azureml", "--component", str(COMPONENT_SPEC)]
    assert main([*args, "--model-tags", str(hostile)]) == 1
    assert "model.tags.finetune_compute_allow_list: value nests deeper than 4 levels" in capsys.readouterr().err


def test_invalid_config_and_unreadable_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: Phi-3-mini-4k-instruct}\ncompute: {cluster: serverless}\nsurprise: 1\n")
    assert main(["plan", str(bad), *OFFLINE]) == 1
    err = capsys.readouterr().err
    assert "data: required field is missing" in err
    assert "surprise: unknown key" in err

    assert main(["plan", str(tmp_path / "missing.yaml"), *OFFLINE]) == 2
    assert "error: cannot read" in capsys.readouterr().err

    not_a_spec = tmp_path / "spec.yaml"
    not_a_spec.write_text("type: pipeline\ninputs: 3\n")
    args = ["plan", str(SEED_SAMPLE), "--platform", "azureml", "--model-tags", str(MODEL_TAGS)]
    assert main([*args, "--component", str(not_a_spec)]) == 1
    assert "--component:" in capsys.readouterr().err


def test_offline_flags_need_the_azure_platform(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(SEED_SAMPLE), "--platform", "local", "--component", str(COMPONENT_SPEC)]) == 2
    assert "apply to --platform azureml only" in capsys.readouterr().err


def test_local_platform_missing_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared import runtime

    monkeypatch.setitem(runtime.ADAPTERS, "local", "shared.platform.no_such_adapter:LocalPlatform")
    assert main(["plan", str(SEED_SAMPLE), "--platform", "local"]) == 2
    assert "the local platform is not available" in capsys.readouterr().err
