"""Fixtures for the Azure ML adapter tests: settings and a workspace fake. Helpers are in support.py.

Importing azure.ai.ml costs a few seconds; it happens once per session, at collection.
"""

from __future__ import annotations

import pytest

from shared.settings import Settings
from tests.unit.shared.azureml.azure_fakes import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeWorkspace, family_usage

A100 = "standardNCADSA100v4Family"


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
        # Families and vCPUs as list_sizes() reports them (the VM sizes' documented vCPU counts).
        sizes=[
            VmSize(name="Standard_D12_v2", family="standardDv2Family", v_cp_us=4, gpus=0),  # type: ignore[abstract]
            VmSize(name="Standard_NC24rs_v3", family="standardNCSv3Family", v_cp_us=24, gpus=4),  # type: ignore[abstract]
            VmSize(name="Standard_NC24ads_A100_v4", family=A100, v_cp_us=24, gpus=1),  # type: ignore[abstract]
            VmSize(name="Standard_NC48ads_A100_v4", family=A100, v_cp_us=48, gpus=2),  # type: ignore[abstract]
            VmSize(name="Standard_NC96ads_A100_v4", family=A100, v_cp_us=96, gpus=4),  # type: ignore[abstract]
        ],
        # Room for the seed's run: 96 vCPUs for the 4 x A100 node, 48 for one NC24 instance plus the 20%.
        usages=[
            family_usage("Standard NCADSA100v4 Family Cluster Dedicated vCPUs", 0, 200),
            family_usage("Total Cluster Dedicated Regional vCPUs", 0, 400),
        ],
    )
