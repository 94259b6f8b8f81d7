"""Fixtures for the Azure ML adapter tests: settings and a workspace fake. Helpers are in support.py.

Importing azure.ai.ml costs a few seconds; it happens once per session, at collection.
"""

from __future__ import annotations

import pytest

from shared.settings import Settings
from tests.unit.shared.azureml.azure_fakes import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeWorkspace


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


@pytest.fixture
def workspace() -> FakeWorkspace:
    from azure.ai.ml.entities import AmlCompute
    from azure.ai.ml.entities._compute._vm_size import VmSize

    # A 4 x A100 cluster: in Phi-4's finetuneComputes (system_metadata.supportedComputes).
    return FakeWorkspace(
        computes={
            "gpu-cluster": AmlCompute(
                name="gpu-cluster", size="Standard_NC96ads_A100_v4", provisioning_state="Succeeded"
            )
        },
        sizes=[
            VmSize(name="Standard_D12_v2", gpus=0),  # type: ignore[abstract]
            VmSize(name="Standard_NC24rs_v3", gpus=4),  # type: ignore[abstract]
            VmSize(name="Standard_NC24ads_A100_v4", gpus=1),  # type: ignore[abstract]
            VmSize(name="Standard_NC48ads_A100_v4", gpus=2),  # type: ignore[abstract]
            VmSize(name="Standard_NC96ads_A100_v4", gpus=4),  # type: ignore[abstract]
        ],
    )
