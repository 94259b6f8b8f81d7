"""Fixtures for the Azure ML adapter tests: settings, the seed's config, the fixture files, a workspace fake.

Importing azure.ai.ml costs a few seconds; it happens once per session, here.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from shared.config.model import TrainingConfig
from shared.settings import Settings
from tests.unit.shared.azureml.azure_fakes import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeWorkspace, spec_ml_client

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "azureml"
COMPONENT_SPEC = FIXTURES / "chat_completion_pipeline.yaml"
MODEL_TAGS = FIXTURES / "phi3-mini-4k-instruct.tags.json"
REPO = Path(__file__).resolve().parents[4]
SEED_SAMPLE = REPO / "samples" / "phi3-ultrachat.yaml"
RUN_ID = "phi3-ultrachat-1a2b3c4d"
DATA = "azureml://datastores/workspaceblobstore/paths/ultrachat_200k_dataset"


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env(
        {
            "AUTOPILOT_PLATFORM": "azureml",
            "AZUREML_SUBSCRIPTION_ID": SUBSCRIPTION,
            "AZUREML_RESOURCE_GROUP": RESOURCE_GROUP,
            "AZUREML_WORKSPACE_NAME": WORKSPACE,
        }
    )


def seed_config(**compute: Any) -> TrainingConfig:
    """The seed notebook's run: Phi-3-mini-4k-instruct, 3 epochs, lr 5e-6, cosine, LoRA, DeepSpeed stage 2."""
    return TrainingConfig.model_validate(
        {
            "name": "phi3-ultrachat",
            "experiment_name": "chat_completion_Phi-3-mini-4k-instruct",
            "model": {"name": "Phi-3-mini-4k-instruct"},
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
    tags: dict[str, str] = json.loads(MODEL_TAGS.read_text())["tags"]
    return tags


def registry_client() -> Any:
    """An autospecced registry MLClient answering with the fixture model and component."""
    from azure.ai.ml.entities import Model

    client = spec_ml_client()
    client.models.get.return_value = Model(
        name="Phi-3-mini-4k-instruct",
        version="15",
        id="azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/15",
        tags=fixture_model_tags(),
    )
    client.components.get.return_value = fixture_component()
    return client


@functools.cache
def fixture_component() -> Any:
    """The fixture spec loaded once (calling a component to make a node does not change it)."""
    from azure.ai.ml import load_component

    return load_component(source=COMPONENT_SPEC)


@pytest.fixture
def workspace() -> FakeWorkspace:
    from azure.ai.ml.entities import AmlCompute
    from azure.ai.ml.entities._compute._vm_size import VmSize

    return FakeWorkspace(
        computes={
            "gpu-cluster": AmlCompute(name="gpu-cluster", size="Standard_NC24rs_v3", provisioning_state="Succeeded")
        },
        sizes=[
            VmSize(name="Standard_D12_v2", gpus=0),  # type: ignore[abstract]
            VmSize(name="Standard_NC24rs_v3", gpus=4),  # type: ignore[abstract]
            VmSize(name="Standard_NC24ads_A100_v4", gpus=1),  # type: ignore[abstract]
        ],
    )


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


def offline_platform(settings: Settings, component: Path = COMPONENT_SPEC, tags: Path = MODEL_TAGS) -> Any:
    from shared.platform.azureml.adapter import AzureMLPlatform
    from shared.platform.azureml.offline import OfflineSources

    return AzureMLPlatform(settings, offline=OfflineSources(component, tags))
