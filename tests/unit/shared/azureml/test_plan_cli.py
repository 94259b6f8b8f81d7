"""``autopilot plan``: the seed sample previewed offline, rejections as one line per reason, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from autopilot.main import main
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.support import (
    COMPONENT_SPEC,
    MODEL_SPEC,
    MODEL_TAGS,
    RETIRED_MODEL_SPEC,
    RETIRED_SAMPLE,
    SEED_SAMPLE,
)

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

OFFLINE = ["--platform", "azureml", "--component", str(COMPONENT_SPEC), "--model-spec", str(MODEL_SPEC)]


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (
        "AUTOPILOT_PLATFORM",
        "AZUREML_SUBSCRIPTION_ID",
        "AZUREML_RESOURCE_GROUP",
        "AZUREML_WORKSPACE_NAME",
        "AUTOPILOT_CONFIG_CONTAINER",
        "AZUREML_REGISTRY",
    ):
        monkeypatch.delenv(key, raising=False)


def write_config(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(SEED_SAMPLE.read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        data[section][key] = value
    path = tmp_path / "phi3-ultrachat.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_plan_prints_the_phi4_job_with_allow_lists_from_system_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(SEED_SAMPLE), *OFFLINE]) == 0
    out = capsys.readouterr().out
    assert "Effective parameters (origin: default < model < config)" in out
    assert "precision                    16           model" in out
    assert "learning_rate                5e-06        config" in out
    assert "ignore_mismatched_sizes      false        model" in out  # a real input now, no longer dropped
    assert "logging_strategy             steps        model" in out
    assert "(from system_metadata.supportedComputes.finetuneComputes)" in out
    assert "(from system_metadata.supportedComputes.inferenceComputes)" in out
    assert "fine-tune: serverless, VM size Standard_NC48ads_A100_v4, 2 GPU(s) per node" in out
    assert "inference: Standard_NC24ads_A100_v4: accepted" in out
    assert "warning" not in out

    job = yaml.safe_load(out.split("\n---\n", 1)[1])
    node = job["jobs"]["chat_completion_pipeline"]
    assert node["component"] == "azureml://registries/azureml/components/chat_completion_pipeline/versions/0.0.82"
    assert (node["inputs"]["apply_lora"], node["inputs"]["apply_deepspeed"], node["inputs"]["deepspeed_stage"]) == (
        "true",
        "true",
        "3",
    )
    assert node["inputs"]["compute_finetune"] == "serverless"
    assert node["inputs"]["instance_type_finetune"] == "Standard_NC48ads_A100_v4"
    assert node["inputs"]["ignore_mismatched_sizes"] == "false"
    assert job["display_name"] == "Phi-4-ultrachat-bs2-cosine-ds3-lora-save_limit1-seqlen-1"
    assert job["name"].startswith("phi4-ultrachat-")
    assert job["tags"]["autopilot_managed"] == "true"


def test_plan_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(SEED_SAMPLE), *OFFLINE, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["effective_params"]["apply_lora"] == {"value": True, "source": "config"}
    assert plan["effective_params"]["deepspeed_stage"] == {"value": 3, "source": "config"}
    assert plan["job"]["jobs"]["chat_completion_pipeline"]["inputs"]["deepspeed_stage"] == "3"
    assert plan["names"]["job"] == plan["run_id"] == plan["job"]["name"]
    assert plan["compute"]["gpus_per_node"] == 2
    assert plan["allow_lists"]["finetune"]["source"] == "system_metadata.supportedComputes.finetuneComputes"
    assert "Standard_ND96isr_H100_v5" in plan["allow_lists"]["finetune"]["skus"]
    assert plan["lifecycle"] == {"archived": False, "dates": {}, "source": ""}


def test_the_seed_sample_with_the_real_phi3_tags_is_rejected_as_retired(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["plan", str(RETIRED_SAMPLE), "--platform", "azureml", "--component", str(COMPONENT_SPEC)]
    assert main([*args, "--model-tags", str(MODEL_TAGS)]) == 1
    err = capsys.readouterr().err
    assert "model.name: Phi-3-mini-4k-instruct version 15 is retired for fine-tuning" in err
    assert "deprecated 2025-06-30, retired 2025-08-30 (from tags FinetuneDeprecationDate, FinetuneRetirementDate" in err
    assert "instead: Phi-4" in err


def test_the_seed_sample_with_the_current_phi3_spec_is_rejected_as_archived(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["plan", str(RETIRED_SAMPLE), "--platform", "azureml", "--component", str(COMPONENT_SPEC)]
    assert main([*args, "--model-spec", str(RETIRED_MODEL_SPEC), "--json"]) == 1
    [rejected] = json.loads(capsys.readouterr().out)["rejected"]
    assert rejected["path"] == "model.name"
    assert "archived in the registry; fine-tuning deprecated 2025-06-30, retired 2025-08-30" in rejected["message"]
    assert "(from system_metadata.deprecation)" in rejected["message"]


def test_a_deprecated_model_plans_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = yaml.safe_load(MODEL_SPEC.read_text())
    spec["system_metadata"]["deprecation"] = {
        "finetuneDeprecationDate": "2020-01-01T00:00:00.000000Z",
        "finetuneRetirementDate": "2999-01-01T00:00:00.000000Z",
    }
    deprecated = tmp_path / "phi-4.model.spec.yaml"
    deprecated.write_text(yaml.safe_dump(spec))
    args = ["plan", str(SEED_SAMPLE), "--platform", "azureml", "--component", str(COMPONENT_SPEC)]
    assert main([*args, "--model-spec", str(deprecated)]) == 0
    out = capsys.readouterr().out
    assert "- warning: Phi-4 version 8 is deprecated for fine-tuning: fine-tuning deprecated 2020-01-01" in out


def test_a_model_without_allow_lists_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = yaml.safe_load(MODEL_SPEC.read_text())
    del spec["system_metadata"]["supportedComputes"]
    bare = tmp_path / "phi-4.model.spec.yaml"
    bare.write_text(yaml.safe_dump(spec))
    args = ["plan", str(SEED_SAMPLE), "--platform", "azureml", "--component", str(COMPONENT_SPEC)]
    assert main([*args, "--model-spec", str(bare)]) == 0
    out = capsys.readouterr().out
    assert (
        "warning: no finetune allow list (the model has neither system_metadata.supportedComputes.finetuneComputes "
        "nor a finetune_compute_allow_list tag); the seed's K80 deny list applies" in out
    )
    assert "any SKU is accepted" in out


def test_the_same_config_gets_one_endpoint_name_per_workspace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    names = []
    for workspace in ("ws-team-a", "ws-team-b", "ws-team-a"):
        monkeypatch.setenv("AZUREML_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000001")
        monkeypatch.setenv("AZUREML_RESOURCE_GROUP", "rg-ml")
        monkeypatch.setenv("AZUREML_WORKSPACE_NAME", workspace)
        assert main(["plan", str(SEED_SAMPLE), *OFFLINE, "--json"]) == 0
        names.append(json.loads(capsys.readouterr().out)["names"]["endpoint"])
    assert names[0] != names[1] and names[0] == names[2]
    assert all(3 <= len(n) <= 32 and n.startswith("ft-phi4-ultrachat-") for n in names)


def test_model_tags_and_model_spec_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(SEED_SAMPLE), *OFFLINE, "--model-tags", str(MODEL_TAGS)]) == 2
    assert "not both" in capsys.readouterr().err


def test_rejections_exit_1_with_one_line_per_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, deployment__instance_type="Standard_NC6", data__train="data/train.jsonl")
    assert main(["plan", str(config), *OFFLINE]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "A submit would be rejected (2 reasons):"
    assert err[1].startswith("  deployment.instance_type: Standard_NC6 is not in the model's inference allow list")
    assert err[1].endswith("(from system_metadata.supportedComputes.inferenceComputes)")
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
    args = ["plan", str(RETIRED_SAMPLE), "--platform", "azureml", "--component", str(COMPONENT_SPEC)]
    assert main([*args, "--model-tags", str(hostile)]) == 1
    assert "model.tags.finetune_compute_allow_list: value nests deeper than 4 levels" in capsys.readouterr().err


def test_invalid_config_and_unreadable_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: Phi-4}\ncompute: {cluster: serverless}\nsurprise: 1\n")
    assert main(["plan", str(bad), *OFFLINE]) == 1
    err = capsys.readouterr().err
    assert "data: required field is missing" in err
    assert "surprise: unknown key" in err

    assert main(["plan", str(tmp_path / "missing.yaml"), *OFFLINE]) == 2
    assert "error: cannot read" in capsys.readouterr().err

    not_a_spec = tmp_path / "spec.yaml"
    not_a_spec.write_text("type: pipeline\ninputs: 3\n")
    args = ["plan", str(SEED_SAMPLE), "--platform", "azureml", "--model-spec", str(MODEL_SPEC)]
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


def test_plan_estimates_training_and_endpoint_cost_from_the_price_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTOPILOT_PRICE_TABLE", raising=False)
    assert main(["plan", str(SEED_SAMPLE), *OFFLINE, "--hours", "12"]) == 0
    out = capsys.readouterr().out
    assert "Cost (estimate at list price" in out
    assert "1 node(s) x Standard_NC48ads_A100_v4 at $9.554/h, eastus, as of 2026-11-09" in out
    assert "training: about $114.65 for 12 h 0 min (--hours; an estimate, not a quote)" in out
    assert "x Standard_NC24ads_A100_v4 at $3.673/h" in out and "= $88.15 per day while it is up" in out
    assert "compute: unknown: offline: quota and capacity not checked" in out

    # From the steps: the seed's 3 epochs over 2 GPUs, --rows counted by the user, a measured step time.
    assert main(["plan", str(SEED_SAMPLE), *OFFLINE, "--rows", "8000", "--seconds-per-step", "3", "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]
    assert cost["training"]["steps"] == 12000 and cost["training"]["hours"] == 10
    assert cost["training"]["usd_estimate"] == pytest.approx(95.54)

    # A SKU with no price says so; the override file is where a price comes from.
    path = write_config(tmp_path, compute__instance_type="Standard_ND96amsr_A100_v4")
    assert main(["plan", str(path), *OFFLINE, "--hours", "2"]) == 0
    assert "training: Standard_ND96amsr_A100_v4: no price on record" in capsys.readouterr().out
    override = tmp_path / "prices.json"
    override.write_text('{"prices": {"Standard_ND96amsr_A100_v4": {"usd_per_hour": 30, "region": "r", "as_of": "d"}}}')
    monkeypatch.setenv("AUTOPILOT_PRICE_TABLE", str(override))
    assert main(["plan", str(path), *OFFLINE, "--hours", "2"]) == 0
    assert "training: about $60.00 for 2 h 0 min" in capsys.readouterr().out
    override.write_text("{")
    assert main(["plan", str(path), *OFFLINE]) == 2
    assert "AUTOPILOT_PRICE_TABLE" in capsys.readouterr().err


def test_plan_refuses_a_bad_hours_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["plan", str(SEED_SAMPLE), *OFFLINE, "--hours", "-3"])
    assert exited.value.code == 2 and "expected a number above 0, not '-3'" in capsys.readouterr().err


def test_a_quality_gate_plans_clean_on_azureml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The fine-tune step's eval_loss is read from the workspace's MLflow tracking (training_metrics.py).
    config = write_config(tmp_path, deployment__quality_gate={"max_eval_loss": 1.5, "require_improvement": True})
    assert main(["plan", str(config), *OFFLINE, "--json"]) == 0
    out = capsys.readouterr()
    assert "quality_gate" not in out.err
    assert json.loads(out.out)["platform"] == "azureml"
