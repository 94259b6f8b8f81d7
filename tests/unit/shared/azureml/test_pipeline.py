"""The fine-tuning job, built from the fixture component spec for the seed's configuration and serialised
by the SDK: what the service would receive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.naming import app_tags
from shared.services.planning import build_plan
from shared.settings import Settings
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.azure_fakes import FakeWorkspace
from tests.unit.shared.azureml.support import (
    COMPONENT_SPEC,
    DATA,
    RUN_ID,
    make_platform,
    offline_platform,
    seed_config,
)

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

# save_limit1: Phi-4's model_specific_defaults set save_total_limit 1.
SEED_DISPLAY = "Phi-4-ultrachat-bs{bs}-cosine-ds2-lora-save_limit1-seqlen-1"
COMPUTE_INPUTS = ("compute_model_import", "compute_preprocess", "compute_finetune", "compute_model_evaluation")


def plan_and_job(platform: Any, config: Any = None) -> tuple[Any, dict[str, Any], Any]:
    plan = build_plan(
        config or seed_config(),
        run_id=RUN_ID,
        config_blob="phi3-ultrachat.yaml",
        config_name="phi3-ultrachat",
        platform=platform,
        data_root=Path("."),
    )
    from shared.platform.azureml.pipeline import job_to_dict

    built = platform.build_pipeline_job(plan.job)
    return plan, job_to_dict(built.job), built


def node_inputs(job: dict[str, Any]) -> dict[str, Any]:
    inputs: dict[str, Any] = job["jobs"]["chat_completion_pipeline"]["inputs"]
    return inputs


def test_seed_job_offline_is_what_the_notebook_submits(settings: Settings) -> None:
    _, job, built = plan_and_job(offline_platform(settings))

    assert job["type"] == "pipeline"
    assert job["name"] == RUN_ID
    assert job["display_name"] == SEED_DISPLAY.format(bs=1)  # 1 GPU assumed offline
    assert job["experiment_name"] == "chat_completion_Phi-4"
    assert job["tags"] == app_tags(RUN_ID, "phi3-ultrachat.yaml")
    assert job["settings"] == {"force_rerun": True, "continue_on_step_failure": False}
    # The real component declares its mlflow_model_folder output with mode rw_mount.
    assert job["outputs"] == {"trained_model": {"type": "mlflow_model", "mode": "rw_mount"}}
    node = job["jobs"]["chat_completion_pipeline"]
    assert node["type"] == "pipeline"
    assert node["outputs"] == {"mlflow_model_folder": "${{parent.outputs.trained_model}}"}

    inputs = node["inputs"]
    assert inputs["apply_lora"] == "true"
    assert inputs["apply_deepspeed"] == "true"
    assert inputs["deepspeed_stage"] == "2"
    assert inputs["merge_lora_weights"] == "true"
    assert inputs["num_train_epochs"] == 3
    assert inputs["learning_rate"] == pytest.approx(5e-6)
    assert inputs["lr_scheduler_type"] == "cosine"
    assert inputs["per_device_train_batch_size"] == 1
    assert inputs["per_device_eval_batch_size"] == 1
    assert inputs["task_name"] == "ChatCompletion"
    assert inputs["precision"] == "16"  # from the model's model_specific_defaults
    assert inputs["mlflow_model_path"] == {
        "type": "mlflow_model",
        "path": "azureml://registries/azureml/models/Phi-4/versions/8",
    }
    assert inputs["train_file_path"] == {"type": "uri_file", "path": f"{DATA}/train_sft.jsonl"}
    assert inputs["test_file_path"] == {"type": "uri_file", "path": f"{DATA}/test_sft.jsonl"}
    assert "validation_file_path" not in inputs  # not in the config: the component splits train
    assert {inputs[name] for name in COMPUTE_INPUTS} == {"gpu-cluster"}
    assert "instance_type_finetune" not in inputs  # a named cluster runs on its own size
    assert inputs["number_of_gpu_to_use_finetuning"] == 1
    assert inputs["num_nodes_finetune"] == 1
    assert built.job._validate().passed


def test_every_boolean_input_is_the_string_the_component_declares(settings: Settings) -> None:
    _, job, built = plan_and_job(offline_platform(settings))
    inputs = node_inputs(job)
    boolean_inputs = [
        name
        for name, spec in built.component.inputs.items()
        if list(getattr(spec, "enum", None) or []) == ["true", "false"]
    ]
    assert len(boolean_inputs) >= 8
    for name in boolean_inputs:
        if name in inputs:  # the app sends every boolean it types; the others keep the component's default
            assert inputs[name] in {"true", "false"}, name
    assert {"trust_remote_code", "ignore_mismatched_sizes", "enable_full_determinism"} <= set(inputs)


def test_seed_job_against_a_workspace_reads_gpus_from_the_cluster_size(
    settings: Settings, workspace: FakeWorkspace
) -> None:
    from tests.unit.shared.azureml.support import registry_client

    registry = registry_client()
    platform = make_platform(settings, workspace, registry=registry)
    plan, job, _ = plan_and_job(platform)

    registry.models.get.assert_called_once_with("Phi-4", label="latest")
    registry.components.get.assert_called_once_with(name="chat_completion_pipeline", label="latest")
    assert plan.compute.size == "Standard_NC96ads_A100_v4"
    assert node_inputs(job)["number_of_gpu_to_use_finetuning"] == 4
    assert job["display_name"] == SEED_DISPLAY.format(bs=4)  # 1 per device x 4 GPUs x 1 node, as the seed computes
    # Phi-4's defaults are all component inputs now (ignore_mismatched_sizes, logging_strategy included).
    assert plan.params.params["ignore_mismatched_sizes"].source == "model"
    assert plan.params.params["logging_strategy"].source == "model"
    assert not any("model_specific_defaults" in note for note in plan.notes)


def test_serverless_binds_the_gpu_steps_to_the_instance_type(settings: Settings) -> None:
    config = seed_config(cluster="serverless", instance_type="Standard_NC96ads_A100_v4", nodes=2)
    plan, job, _ = plan_and_job(offline_platform(settings), config)
    inputs = node_inputs(job)
    assert {inputs[name] for name in COMPUTE_INPUTS} == {"serverless"}
    assert inputs["instance_type_finetune"] == "Standard_NC96ads_A100_v4"
    assert inputs["instance_type_model_evaluation"] == "Standard_NC96ads_A100_v4"
    # CPU steps keep the component's CPU default rather than a GPU SKU.
    assert "instance_type_model_import" not in inputs
    assert "instance_type_preprocess" not in inputs
    assert inputs["number_of_gpu_to_use_finetuning"] == 4  # offline table for the SKU
    assert inputs["num_nodes_finetune"] == 2
    assert job["display_name"].startswith("Phi-4-ultrachat-bs8-")
    assert any("built-in table" in note for note in plan.notes)


def test_inputs_the_component_does_not_declare_are_dropped_and_reported(settings: Settings, tmp_path: Path) -> None:
    spec = yaml.safe_load(COMPONENT_SPEC.read_text())
    del spec["inputs"]["apply_ort"]
    del spec["inputs"]["shm_size_finetune"]
    older = tmp_path / "older.yaml"
    older.write_text(yaml.safe_dump(spec))
    _, job, built = plan_and_job(offline_platform(settings, component=older))
    inputs = node_inputs(job)
    assert "apply_ort" not in inputs
    assert "shm_size_finetune" not in inputs
    assert built.notes and "apply_ort, shm_size_finetune" in built.notes[0]
    assert built.job._validate().passed
