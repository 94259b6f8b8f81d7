"""The seed's compute checks against a workspace that holds computes and VM sizes, and offline."""

from __future__ import annotations

import pytest

from shared.exceptions import RejectedError
from shared.platform.port import ComputeRequest
from shared.settings import Settings
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.azure_fakes import FakeWorkspace
from tests.unit.shared.azureml.support import make_platform, offline_platform

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

ALLOW = ["Standard_NC24rs_v3", "Standard_NC24ads_A100_v4", "Standard_NC96ads_A100_v4"]


def cluster(name: str = "gpu-cluster", gpus: int | None = None) -> ComputeRequest:
    return ComputeRequest(cluster=name, instance_type=None, gpus_per_node=gpus)


def rejection(exc: pytest.ExceptionInfo[RejectedError]) -> list[tuple[str, str]]:
    return [(issue.path, issue.message) for issue in exc.value.issues]


def test_cluster_in_the_allow_list_gets_its_gpus_from_the_vm_sizes(
    settings: Settings, workspace: FakeWorkspace
) -> None:
    info = make_platform(settings, workspace).check_compute(cluster(), ALLOW)
    assert (info.cluster, info.size, info.gpus_per_node) == ("gpu-cluster", "Standard_NC96ads_A100_v4", 4)
    workspace.client.compute.get.assert_called_once_with("gpu-cluster")
    workspace.client.compute.list_sizes.assert_called_once_with()


def test_allow_list_compares_case_insensitively(settings: Settings, workspace: FakeWorkspace) -> None:
    info = make_platform(settings, workspace).check_compute(cluster(), ["STANDARD_NC96ADS_A100_V4"])
    assert info.gpus_per_node == 4


def test_missing_cluster_is_rejected(settings: Settings, workspace: FakeWorkspace) -> None:
    with pytest.raises(RejectedError) as exc:
        make_platform(settings, workspace).check_compute(cluster("no-such-cluster"), ALLOW)
    [(path, message)] = rejection(exc)
    assert path == "compute.cluster"
    assert "no compute named 'no-such-cluster'" in message


def test_cluster_that_failed_to_provision_is_rejected(settings: Settings, workspace: FakeWorkspace) -> None:
    workspace.computes["gpu-cluster"]._provisioning_state = "Failed"
    with pytest.raises(RejectedError) as exc:
        make_platform(settings, workspace).check_compute(cluster(), ALLOW)
    assert (
        "compute.cluster",
        "compute 'gpu-cluster' failed to provision; fix it or use a different compute",
    ) in rejection(exc)


def test_size_outside_the_allow_list_is_rejected(settings: Settings, workspace: FakeWorkspace) -> None:
    with pytest.raises(RejectedError) as exc:
        make_platform(settings, workspace).check_compute(cluster(), ["Standard_NC24ads_A100_v4"])
    [(path, message)] = rejection(exc)
    assert path == "compute.cluster"
    assert "Standard_NC96ads_A100_v4 is not in the model's fine-tune allow list: Standard_NC24ads_A100_v4" in message


def test_without_an_allow_list_the_seed_deny_list_applies(settings: Settings, workspace: FakeWorkspace) -> None:
    from azure.ai.ml.entities import AmlCompute

    workspace.computes["k80"] = AmlCompute(name="k80", size="Standard_NC12", provisioning_state="Succeeded")
    platform = make_platform(settings, workspace)
    with pytest.raises(RejectedError) as exc:
        platform.check_compute(cluster("k80"), None)
    assert rejection(exc)[0][0] == "compute.cluster"
    assert "not supported for fine-tuning" in rejection(exc)[0][1]
    assert platform.check_compute(cluster(), None).gpus_per_node == 4


def test_size_unknown_to_the_workspace_is_rejected_with_the_available_sizes(
    settings: Settings, workspace: FakeWorkspace
) -> None:
    workspace.sizes = [s for s in workspace.sizes if s.name != "Standard_NC96ads_A100_v4"]
    with pytest.raises(RejectedError) as exc:
        make_platform(settings, workspace).check_compute(cluster(), ALLOW)
    [(path, message)] = rejection(exc)
    assert path == "compute.cluster"
    assert "GPU count for VM size Standard_NC96ads_A100_v4 not found" in message
    assert "Standard_NC24ads_A100_v4" in message


def test_more_gpus_than_the_sku_has_is_rejected(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    assert platform.check_compute(cluster(gpus=2), ALLOW).gpus_per_node == 2
    with pytest.raises(RejectedError) as exc:
        platform.check_compute(cluster(gpus=8), ALLOW)
    assert rejection(exc) == [("compute.gpus_per_node", "8 is more than the 4 GPU(s) of Standard_NC96ads_A100_v4")]


def test_serverless_checks_the_instance_type(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    ok = platform.check_compute(ComputeRequest("serverless", "standard_nc24ads_a100_v4", None), ALLOW)
    assert (ok.cluster, ok.gpus_per_node) == ("serverless", 1)
    workspace.client.compute.get.assert_not_called()
    with pytest.raises(RejectedError) as exc:
        platform.check_compute(ComputeRequest("serverless", "Standard_D12_v2", None), ALLOW)
    assert [p for p, _ in rejection(exc)] == ["compute.instance_type"]


def test_cpu_only_sku_is_rejected(settings: Settings, workspace: FakeWorkspace) -> None:
    with pytest.raises(RejectedError) as exc:
        make_platform(settings, workspace).check_compute(ComputeRequest("serverless", "Standard_D12_v2", None), None)
    assert rejection(exc) == [
        ("compute.instance_type", "VM size Standard_D12_v2 has no GPUs; fine-tuning needs a GPU SKU")
    ]


def test_local_compute_is_refused_on_azure(settings: Settings, workspace: FakeWorkspace) -> None:
    with pytest.raises(RejectedError) as exc:
        make_platform(settings, workspace).check_compute(cluster("local-cpu"), None)
    assert rejection(exc)[0][0] == "compute.cluster"


def test_offline_reports_the_unmade_checks_as_notes(settings: Settings) -> None:
    platform = offline_platform(settings)
    info = platform.check_compute(cluster(), ALLOW)
    assert info.gpus_per_node == 1
    assert any("not checked" in note for note in info.notes)
    assert any("1 assumed" in note for note in info.notes)
    # What needs no workspace is still checked offline.
    with pytest.raises(RejectedError):
        platform.check_compute(ComputeRequest("serverless", "Standard_NC6", None), None)


def test_inference_sku_against_the_allow_list(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    assert platform.check_inference_compute("standard_nc24ads_a100_v4", ALLOW) == "Standard_NC24ads_A100_v4"
    assert platform.check_inference_compute("Standard_NC6s_v3", None) == "Standard_NC6s_v3"
    for sku in ("Standard_NC6s_v3", "", "local-cpu"):
        with pytest.raises(RejectedError) as exc:
            platform.check_inference_compute(sku, ALLOW)
        assert rejection(exc)[0][0] == "deployment.instance_type"


def test_data_must_be_readable_in_azure(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    good = {
        "train": "azureml://datastores/workspaceblobstore/paths/d/train.jsonl",
        "validation": "azureml:ultrachat-validation:3",
        "test": "https://example.blob.core.windows.net/d/test.jsonl",
    }
    assert platform.check_data(good) == good
    with pytest.raises(RejectedError) as exc:
        platform.check_data({"train": "data/train.jsonl", "test": "http://insecure/test.jsonl"})
    assert [p for p, _ in rejection(exc)] == ["data.train", "data.test"]
