"""The platform port's contract, one set of assertions run against every implementation the services meet:
the stateful test fake (tests/fakes.py), the local ML platform, and the Azure ML adapter over its workspace
fake. A behaviour the services rely on that one of them lacks fails here, not in a scenario test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.exceptions import NotFoundError, PlatformError, RejectedError
from shared.platform.port import ComputeRequest, DeploymentState, MLPlatform
from shared.settings import Settings
from tests.fakes import FakePlatform


@dataclass(frozen=True)
class Profile:
    """What each implementation calls the same things: a model it has, a cluster and SKUs it knows."""

    platform: MLPlatform
    model: str
    cluster: str
    cluster_sku: str  # the SKU ``cluster`` runs on, as an allow list would name it
    inference_sku: str


def fake_profile(tmp_path: Path) -> Profile:
    return Profile(
        FakePlatform(), "Phi-3-mini-4k-instruct", "gpu-cluster", "Standard_NC24ads_A100_v4", "Standard_NC24ads_A100_v4"
    )


def local_profile(tmp_path: Path) -> Profile:
    from local.platform.adapter import LocalPlatform

    settings = Settings.from_env(
        {"AUTOPILOT_PLATFORM": "local", "AUTOPILOT_WORKDIR": str(tmp_path / "w"), "AUTOPILOT_DATA_ROOT": str(tmp_path)}
    )
    return Profile(LocalPlatform(settings), "tiny-random-chat", "local-cpu", "local-cpu", "local-cpu")


def azureml_profile(tmp_path: Path) -> Profile:
    from azure.ai.ml.entities import AmlCompute, Model
    from azure.ai.ml.entities._compute._vm_size import VmSize

    from shared.platform.azureml.adapter import AzureMLPlatform
    from shared.platform.azureml.clients import AzureClients
    from tests.unit.shared.azureml.azure_fakes import (
        RESOURCE_GROUP,
        SUBSCRIPTION,
        WORKSPACE,
        FakeWorkspace,
        not_found,
        spec_ml_client,
    )

    settings = Settings.from_env(
        {
            "AUTOPILOT_PLATFORM": "azureml",
            "AZUREML_SUBSCRIPTION_ID": SUBSCRIPTION,
            "AZUREML_RESOURCE_GROUP": RESOURCE_GROUP,
            "AZUREML_WORKSPACE_NAME": WORKSPACE,
        }
    )
    workspace = FakeWorkspace(
        computes={"gpu-cluster": AmlCompute(name="gpu-cluster", size="Standard_NC24ads_A100_v4")},
        sizes=[VmSize(name="Standard_NC24ads_A100_v4", gpus=1)],  # type: ignore[abstract]
    )
    registry = spec_ml_client()
    known = Model(name="Phi-4", version="7", id="azureml://registries/azureml/models/Phi-4/versions/7", tags={})

    def model_get(name: str, version: str | None = None, label: str | None = None) -> Any:
        if name != known.name:
            raise not_found(f"model {name}")
        return known

    registry.models.get.side_effect = model_get

    class Clients(AzureClients):
        def registry(self, name: str) -> Any:
            return registry

    clients = Clients(settings, credential=object(), workspace=workspace.client)  # type: ignore[arg-type]
    platform = AzureMLPlatform(settings, clients=clients)
    return Profile(platform, "Phi-4", "gpu-cluster", "Standard_NC24ads_A100_v4", "Standard_NC24ads_A100_v4")


@pytest.fixture(params=[fake_profile, local_profile, azureml_profile], ids=["fake", "local", "azureml"])
def impl(request: pytest.FixtureRequest, tmp_path: Path) -> Profile:
    profile: Profile = request.param(tmp_path)
    return profile


def issue_paths(exc: RejectedError) -> list[str]:
    return [issue.path for issue in exc.issues]


def test_a_known_model_is_found_and_an_unknown_one_is_a_field_error(impl: Profile) -> None:
    found = impl.platform.get_foundation_model(impl.model, "latest", "azureml")
    assert found.name == impl.model and found.id
    with pytest.raises(RejectedError) as caught:
        impl.platform.get_foundation_model("no-such-model-xyz", "latest", "azureml")
    assert issue_paths(caught.value) == ["model.name"]


def test_inference_allow_lists_compare_without_case(impl: Profile) -> None:
    allowed = [impl.inference_sku.upper()]
    assert impl.platform.check_inference_compute(impl.inference_sku, allowed).lower() == impl.inference_sku.lower()


def test_an_inference_sku_outside_the_allow_list_is_refused_on_its_field(impl: Profile) -> None:
    with pytest.raises(RejectedError) as caught:
        impl.platform.check_inference_compute(impl.inference_sku, ["Some_Other_Sku"])
    assert issue_paths(caught.value) == ["deployment.instance_type"]


def test_fine_tune_compute_is_checked_against_the_allow_list(impl: Profile) -> None:
    request = ComputeRequest(impl.cluster, None, None)
    assert impl.platform.check_compute(request, [impl.cluster_sku.lower()]).cluster == impl.cluster
    with pytest.raises(RejectedError) as caught:
        impl.platform.check_compute(request, ["Some_Other_Sku"])
    assert all(path.startswith("compute.") for path in issue_paths(caught.value))


def test_an_unknown_cluster_is_refused_on_compute_cluster(impl: Profile) -> None:
    with pytest.raises(RejectedError) as caught:
        impl.platform.check_compute(ComputeRequest("no-such-cluster", None, None), None)
    assert issue_paths(caught.value) == ["compute.cluster"]


def test_a_missing_job_is_not_found(impl: Profile) -> None:
    with pytest.raises(NotFoundError):
        impl.platform.get_job("no-such-job-1234")


def test_canceling_a_job_that_does_not_exist_is_success(impl: Profile) -> None:
    impl.platform.cancel_job("no-such-job-1234")
    impl.platform.cancel_job("no-such-job-1234")


def test_missing_deployments_and_endpoints(impl: Profile) -> None:
    info = impl.platform.get_deployment("ft-missing-abcd1234", "d-missing")
    assert info.state == DeploymentState.MISSING
    impl.platform.begin_delete_endpoint("ft-missing-abcd1234")  # deleting what is gone is success
    assert impl.platform.list_endpoints() == []
    with pytest.raises(PlatformError):
        impl.platform.set_traffic("ft-missing-abcd1234", {"d-missing": 100})


def test_deployments_of_a_missing_endpoint(impl: Profile) -> None:
    from datetime import UTC, datetime

    with pytest.raises(NotFoundError):
        impl.platform.list_deployments("ft-missing-abcd1234")
    with pytest.raises(NotFoundError):
        impl.platform.deployment_metrics("ft-missing-abcd1234", datetime.now(UTC))
    impl.platform.begin_delete_deployment("ft-missing-abcd1234", "d-missing")  # deleting what is gone is success


def test_joining_an_endpoint_that_does_not_exist_is_not_found(impl: Profile) -> None:
    from shared.naming import app_tags
    from shared.platform.port import DeployRequest, ModelRef

    request = DeployRequest(
        "ft-missing-abcd1234",
        "d-abcd1234",
        ModelRef("m", "1", "azureml:m:1"),
        impl.inference_sku,
        1,
        90_000,
        600,
        1,
        "canary",
        app_tags("line-abcd1234", "line.yaml"),
        join_endpoint=True,
    )
    with pytest.raises(NotFoundError):
        impl.platform.begin_deploy(request)
    assert impl.platform.list_endpoints() == []
