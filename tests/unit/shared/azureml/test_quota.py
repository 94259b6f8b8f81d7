"""Quota and capacity at submit, on the workspace fake: sizes and usages as the SDK's own ``VmSize`` and
``Usage`` entities, named as the service names them; the services' verdict (reject, warn, off) through submit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from azure.ai.ml.entities import AmlCompute
from azure.core.exceptions import HttpResponseError

from shared.naming import run_status_blob_name
from shared.platform.azureml.quota import family_usage_name
from shared.platform.port import CapacityOutcome, CapacityRequest, ComputeRequest
from shared.services.submit import submit_config
from shared.settings import Settings
from shared.states import RunState
from tests.fakes import FakeClock, make_store
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.azure_fakes import FakeWorkspace, family_usage
from tests.unit.shared.azureml.support import SEED_SAMPLE, make_platform, registry_client

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

A100_QUOTA = "Standard NCADSA100v4 Family Cluster Dedicated vCPUs"
REGIONAL = "Total Cluster Dedicated Regional vCPUs"


def request(nodes: int = 1, inference: str | None = "Standard_NC24ads_A100_v4", count: int = 1) -> CapacityRequest:
    return CapacityRequest(
        ComputeRequest("gpu-cluster", None, None, nodes), "Standard_NC96ads_A100_v4", inference, count
    )


def outcomes(checks: list) -> dict[str, CapacityOutcome]:
    return {c.path: c.outcome for c in checks}


def test_the_family_name_of_a_size_is_the_usage_entry_name() -> None:
    assert family_usage_name("standardNCADSA100v4Family") == A100_QUOTA
    assert family_usage_name("standardNCadsH100v5Family") == "Standard NCadsH100v5 Family Cluster Dedicated vCPUs"


def test_room_for_both_is_ok_with_the_numbers(settings: Settings, workspace: FakeWorkspace) -> None:
    checks = make_platform(settings, workspace).check_capacity(request())
    assert outcomes(checks) == {"compute.cluster": CapacityOutcome.OK, "deployment.instance_count": CapacityOutcome.OK}
    assert "1 x 96 vCPUs of Standard_NC96ads_A100_v4 = 96 vCPUs" in checks[0].message
    # One instance: Azure ML holds ceil(1.2 x 1) = 2 instances' worth of quota for upgrades.
    assert "2 x 24 vCPUs of Standard_NC24ads_A100_v4 = 48 vCPUs" in checks[1].message


def test_the_deployment_short_of_quota_is_short_before_any_training(
    settings: Settings, workspace: FakeWorkspace
) -> None:
    workspace.usages = [family_usage(A100_QUOTA, 120, 200), family_usage(REGIONAL, 120, 400)]
    # 2 instances -> ceil(2.4) = 3 held x 24 = 72 vCPUs; 80 free: fits. 3 -> 4 x 24 = 96 > 80: short.
    platform = make_platform(settings, workspace)
    assert outcomes(platform.check_capacity(request(count=2)))["deployment.instance_count"] == CapacityOutcome.OK
    short = platform.check_capacity(request(count=3))[-1]
    assert short.outcome == CapacityOutcome.SHORT and short.path == "deployment.instance_count"
    assert "only 80 of 200 are free now (120 in use" in short.message and "OutOfQuota" in short.message


def test_the_tightest_of_subscription_workspace_and_regional_limits_applies(
    settings: Settings, workspace: FakeWorkspace
) -> None:
    workspace.usages = [
        family_usage(A100_QUOTA, 0, 200),
        family_usage(A100_QUOTA, 0, 40, workspace="ws-autopilot"),  # this workspace's own cap
        family_usage(A100_QUOTA, 0, 8, workspace="another-workspace"),  # not ours
        family_usage(A100_QUOTA, 190, 200, workspace="ws-autopilot", compute="other-cluster"),  # a part of ours
        family_usage(REGIONAL, 0, 400),
    ]
    checks = make_platform(settings, workspace).check_capacity(request())
    # The fine-tune node (96 vCPUs) is more than this workspace may ever hold: short, whatever is in use.
    assert checks[0].outcome == CapacityOutcome.SHORT and "more than the limit of 40" in checks[0].message
    assert checks[1].outcome == CapacityOutcome.SHORT  # 48 > 40 free


def test_a_busy_family_queues_the_job_and_is_no_reason_to_refuse_it(
    settings: Settings, workspace: FakeWorkspace
) -> None:
    workspace.usages = [family_usage(A100_QUOTA, 150, 200), family_usage(REGIONAL, 150, 400)]
    fine_tune = make_platform(settings, workspace).check_capacity(request(inference=None))
    assert [c.outcome for c in fine_tune] == [CapacityOutcome.BUSY]
    assert "waits in the queue" in fine_tune[0].message


def test_more_nodes_than_the_cluster_scales_to(settings: Settings, workspace: FakeWorkspace) -> None:
    workspace.computes["gpu-cluster"] = AmlCompute(
        name="gpu-cluster", size="Standard_NC96ads_A100_v4", max_instances=2, provisioning_state="Succeeded"
    )
    checks = make_platform(settings, workspace).check_capacity(request(nodes=3, inference=None))
    assert checks[0].path == "compute.nodes" and checks[0].outcome == CapacityOutcome.SHORT
    assert "scales to at most 2 (max_instances)" in checks[0].message


def test_serverless_checks_the_instance_type_family(settings: Settings, workspace: FakeWorkspace) -> None:
    workspace.usages = [family_usage(A100_QUOTA, 0, 48)]
    serverless = CapacityRequest(
        ComputeRequest("serverless", "Standard_NC48ads_A100_v4", None, 2), "Standard_NC48ads_A100_v4", None
    )
    (check,) = make_platform(settings, workspace).check_capacity(serverless)
    assert check.path == "compute.instance_type" and check.outcome == CapacityOutcome.SHORT
    assert "2 x 48 vCPUs" in check.message
    workspace.client.compute.get.assert_not_called()  # serverless has no cluster to read


def test_no_usage_reported_or_no_answer_is_unknown_never_a_refusal(
    settings: Settings, workspace: FakeWorkspace
) -> None:
    workspace.usages = []
    assert {c.outcome for c in make_platform(settings, workspace).check_capacity(request())} == {
        CapacityOutcome.UNKNOWN
    }
    error = HttpResponseError(message="(AuthorizationFailed) no read access to usages")
    error.status_code = 403
    workspace.client.compute.list_usage.side_effect = error
    (check,) = make_platform(settings, workspace).check_capacity(request())
    assert check.outcome == CapacityOutcome.UNKNOWN and "not checked" in check.message


def drop_seed(settings: Settings, workspace: FakeWorkspace, mode: str):
    store, _, status = make_store(FakeClock())
    platform = make_platform(settings, workspace, registry=registry_client())
    record = submit_config(
        container="training-configs",
        blob_name="phi4-ultrachat.yaml",
        content=SEED_SAMPLE.read_bytes(),
        etag=None,
        store=store,
        platform=platform,
        data_root=Path("."),
        quota_check=mode,
    )
    assert record is not None
    blob = status.read(run_status_blob_name(record.run_id))
    assert blob is not None and blob["notes"] == record.notes  # the status blob says what the run says
    return record


@pytest.fixture
def no_room(workspace: FakeWorkspace) -> FakeWorkspace:
    workspace.usages = [family_usage(A100_QUOTA, 180, 200), family_usage(REGIONAL, 180, 400)]
    return workspace


def test_reject_refuses_the_run_before_the_job_naming_the_field(settings: Settings, no_room: FakeWorkspace) -> None:
    record = drop_seed(replace(settings, quota_check="reject"), no_room, "reject")
    assert record.state == RunState.REJECTED
    assert "deployment.instance_count" in [e.path for e in record.errors]
    assert not no_room.jobs  # no GPU hour spent


def test_warn_submits_and_says_so_in_the_notes(settings: Settings, no_room: FakeWorkspace) -> None:
    record = drop_seed(settings, no_room, "warn")
    assert record.state == RunState.SUBMITTED and no_room.jobs
    assert any(n.startswith("warning: quota: deployment.instance_count:") for n in record.notes)


def test_off_asks_nothing(settings: Settings, no_room: FakeWorkspace) -> None:
    record = drop_seed(settings, no_room, "off")
    assert record.state == RunState.SUBMITTED
    no_room.client.compute.list_usage.assert_not_called()
    assert not any("quota" in n for n in record.notes)
