"""Helpers of the Azure ML adapter tests: the real fixture files, the seed's run as a config, the adapter built
on the workspace fake or on offline files. Fixtures are in conftest.py; tests import helpers from here.

The fixtures are the registry's own specs (tests/fixtures/azureml/SOURCES.md): the seed's Phi-3-mini-4k-instruct
is retired, so the run the tests drive is the seed's on Phi-4, a model the registry still offers.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml

from shared.config.model import TrainingConfig
from shared.settings import Settings
from tests.unit.shared.azureml.azure_fakes import FakeWorkspace, spec_ml_client

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "azureml"
COMPONENT_SPEC = FIXTURES / "components" / "chat_completion_pipeline.spec.yaml"
FINETUNE_STEP_SPEC = FIXTURES / "components" / "finetune_chat_completion.spec.yaml"
MODEL_SPEC = FIXTURES / "models" / "phi-4.model.spec.yaml"
RETIRED_MODEL_SPEC = FIXTURES / "models" / "phi-3-mini-4k-instruct.model.spec.yaml"
RETIRED_MODEL_SPEC_BEFORE = FIXTURES / "models" / "phi-3-mini-4k-instruct.model.spec.before-2026-06-16.yaml"
MODEL_TAGS = FIXTURES / "phi3-mini-4k-instruct.tags.json"  # real tags of Phi-3-mini before 2026-06-16 (retired)
REPO = Path(__file__).resolve().parents[4]
SEED_SAMPLE = REPO / "samples" / "phi4-ultrachat.yaml"
RETIRED_SAMPLE = REPO / "samples" / "phi3-ultrachat.yaml"
RUN_ID = "phi3-ultrachat-1a2b3c4d"
DATA = "azureml://datastores/workspaceblobstore/paths/ultrachat_200k_dataset"
MODEL = "Phi-4"
MODEL_ID = "azureml://registries/azureml/models/Phi-4/versions/8"


def seed_config(**compute: Any) -> TrainingConfig:
    """The seed notebook's run on Phi-4: 3 epochs, lr 5e-6, cosine, LoRA, DeepSpeed stage 2."""
    return TrainingConfig.model_validate(
        {
            "name": "phi3-ultrachat",
            "experiment_name": "chat_completion_Phi-4",
            "model": {"name": MODEL},
            "data": {"train": f"{DATA}/train_sft.jsonl", "test": f"{DATA}/test_sft.jsonl"},
            "compute": compute or {"cluster": "gpu-cluster", "gpus_per_node": "auto"},
            "training": {
                "num_train_epochs": 3,
                "per_device_train_batch_size": 1,
                "per_device_eval_batch_size": 1,
                "learning_rate": 5e-6,
                "lr_scheduler_type": "cosine",
            },
            "optimization": {"lora": {"enabled": True}, "deepspeed": {"enabled": True, "stage": 2}},
            "deployment": {"instance_type": "Standard_NC24ads_A100_v4"},
        }
    )


def fixture_model_tags() -> dict[str, str]:
    """Phi-3-mini's real tags from before 2026-06-16, as the registry stores them (text)."""
    tags: dict[str, str] = json.loads(MODEL_TAGS.read_text())["tags"]
    return tags


def sdk_model(spec: Path = MODEL_SPEC) -> Any:
    """The SDK's ``Model`` for a registry model asset spec, as ``registry.models.get`` returns it."""
    from azure.ai.ml.entities import Model

    from shared.platform.azureml.offline import as_tag_text

    data = yaml.safe_load(spec.read_text())
    return Model(
        name=data["name"],
        version=str(data["version"]),
        id=f"azureml://registries/azureml/models/{data['name']}/versions/{data['version']}",
        tags={str(k): as_tag_text(v) for k, v in (data.get("tags") or {}).items()},
        system_metadata=data.get("system_metadata"),
    )


def registry_client(model_spec: Path = MODEL_SPEC) -> Any:
    """An autospecced registry MLClient answering with the real model spec and component."""
    client = spec_ml_client()
    client.models.get.return_value = sdk_model(model_spec)
    client.components.get.return_value = fixture_component()
    return client


@functools.cache
def fixture_component() -> Any:
    """The real spec loaded once (calling a component to make a node does not change it)."""
    from azure.ai.ml import load_component

    return load_component(source=COMPONENT_SPEC)


def make_platform(settings: Settings, workspace: FakeWorkspace, *, registry: Any = None, metrics: Any = None) -> Any:
    """The adapter on the fake workspace and an autospecced registry; no credential is ever used."""
    from shared.platform.azureml.adapter import AzureMLPlatform
    from shared.platform.azureml.clients import AzureClients

    class LazyRegistryClients(AzureClients):
        # Building the registry fake costs a few hundred ms; most tests never look at the registry.
        def registry(self, name: str) -> Any:
            if name not in self._registries:
                self._registries[name] = registry if registry is not None else registry_client()
            return super().registry(name)

    clients = LazyRegistryClients(
        settings,
        credential=object(),  # type: ignore[arg-type]
        workspace=workspace.client,
        metrics=metrics,
    )
    return AzureMLPlatform(settings, clients=clients)


def offline_platform(
    settings: Settings, component: Path = COMPONENT_SPEC, model_spec: Path = MODEL_SPEC, tags: Path | None = None
) -> Any:
    from shared.platform.azureml.adapter import AzureMLPlatform
    from shared.platform.azureml.offline import OfflineSources

    if tags is not None:
        return AzureMLPlatform(settings, offline=OfflineSources(component, tags))
    return AzureMLPlatform(settings, offline=OfflineSources(component, model_spec=model_spec))
