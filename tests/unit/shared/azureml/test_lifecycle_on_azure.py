"""The app's own services (submit, reconcile, cleanup) driving the Azure ML adapter over a workspace fake:
the seed sample goes from a dropped config to a deployed, smoke-tested endpoint and back to deleted."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from shared.config.params import Param
from shared.services.cleanup import cleanup
from shared.services.reconcile import reconcile
from shared.services.submit import submit_config
from shared.settings import Settings
from shared.states import RunState
from tests.fakes import FakeClock, make_store
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.azure_fakes import FakeWorkspace, quota_error
from tests.unit.shared.azureml.support import (
    MODEL_SPEC,
    RETIRED_MODEL_SPEC,
    RETIRED_SAMPLE,
    SEED_SAMPLE,
    make_platform,
    registry_client,
)

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

TIMEOUT = timedelta(minutes=60)


class NoTraffic:
    """A metrics client whose answer is "no requests at all": every minute reported, with zero."""

    def query_resources(self, **kwargs: Any) -> list[Any]:
        since, until = kwargs["timespan"]
        zero = [SimpleNamespace(timestamp=since, total=0.0, average=0.0), SimpleNamespace(timestamp=until, total=0.0)]
        metrics = [
            SimpleNamespace(
                name="RequestsPerMinute",
                id=f"{rid}/providers/Microsoft.Insights/metrics/RequestsPerMinute",
                timeseries=[SimpleNamespace(data=zero)],
            )
            for rid in kwargs["resource_ids"]
        ]
        return [SimpleNamespace(metrics=metrics)]


def submitted(settings: Settings, workspace: FakeWorkspace) -> tuple[Any, Any, str, FakeClock]:
    from azure.ai.ml.entities import AmlCompute

    workspace.computes["gpu-cluster-a100"] = AmlCompute(
        name="gpu-cluster-a100", size="Standard_NC24ads_A100_v4", provisioning_state="Succeeded"
    )
    clock = FakeClock()
    store, _, _ = make_store(clock)
    platform = make_platform(settings, workspace, metrics=lambda region: NoTraffic())
    platform._clock = clock
    record = submit_config(
        container="training-configs",
        blob_name="phi3-ultrachat.yaml",
        content=SEED_SAMPLE.read_bytes(),
        etag="0x1",
        store=store,
        platform=platform,
        data_root=Path("."),
    )
    assert record is not None and record.state == RunState.SUBMITTED, record and record.errors
    return store, platform, record.run_id, clock


def test_seed_sample_from_config_to_deployed_and_deleted(settings: Settings, workspace: FakeWorkspace) -> None:
    store, platform, run, clock = submitted(settings, workspace)
    record = store.get(run)
    assert record is not None
    assert list(workspace.jobs) == [run]
    assert record.effective_params["apply_lora"] == Param(True, "config")

    workspace.jobs[run]._status = "Completed"  # the job ran; its event was lost
    reconcile(store, platform, deploy_timeout=TIMEOUT)
    record = store.get(run)
    assert record is not None and record.state == RunState.DEPLOYING
    assert [key[0] for key in workspace.models] == ["Phi-4-ultrachat-200k"]
    endpoint = record.endpoint_name
    assert endpoint in workspace.endpoints and workspace.deployments == {}

    reconcile(store, platform, deploy_timeout=TIMEOUT)  # endpoint still creating: nothing new
    assert workspace.deployments == {}
    workspace.set_endpoint_state(endpoint, "Succeeded")
    reconcile(store, platform, deploy_timeout=TIMEOUT)  # starts the deployment
    assert list(workspace.deployments) == [(endpoint, record.deployment_name)]
    workspace.set_deployment_state(endpoint, record.deployment_name, "Succeeded")
    reconcile(store, platform, deploy_timeout=TIMEOUT)  # traffic, smoke test, deployed

    record = store.get(run)
    assert record is not None and record.state == RunState.DEPLOYED
    assert workspace.endpoints[endpoint].traffic == {record.deployment_name: 100}
    [smoke] = workspace.invoked
    assert smoke["payload"]["input_data"]["input_string"][0][0]["role"] == "user"
    assert record.smoke_test and record.smoke_test.answer and "Pack layers" in record.smoke_test.answer
    assert len(workspace.models) == 1 and len(workspace.jobs) == 1  # nothing was made twice

    clock.advance(minutes=61)
    decisions = cleanup(store, platform)
    assert [d.action for d in decisions] == ["delete"]
    assert workspace.endpoints == {}
    record = store.get(run)
    assert record is not None and record.state == RunState.DELETED


def test_quota_refusal_ends_deploy_failed_with_its_code(settings: Settings, workspace: FakeWorkspace) -> None:
    store, platform, run, _ = submitted(settings, workspace)
    workspace.jobs[run]._status = "Completed"
    reconcile(store, platform, deploy_timeout=TIMEOUT)
    record = store.get(run)
    assert record is not None and record.endpoint_name
    workspace.set_endpoint_state(record.endpoint_name, "Succeeded")
    workspace.deployment_error = quota_error()

    reconcile(store, platform, deploy_timeout=TIMEOUT)  # the start is refused and recorded on the endpoint
    reconcile(store, platform, deploy_timeout=TIMEOUT)  # the refusal is seen: delete, deploy_failed
    record = store.get(run)
    assert record is not None and record.state == RunState.DEPLOY_FAILED
    assert record.last_error_code == "OutOfQuota"
    assert workspace.endpoints == {}


def test_the_seed_sample_on_its_retired_model_is_rejected_at_submit(
    settings: Settings, workspace: FakeWorkspace
) -> None:
    # The registry answers with Phi-3-mini-4k-instruct as it is today: archived, fine-tuning retired.
    clock = FakeClock()
    store, _, _ = make_store(clock)
    platform = make_platform(settings, workspace, registry=registry_client(RETIRED_MODEL_SPEC))
    record = submit_config(
        container="training-configs",
        blob_name="phi3-ultrachat.yaml",
        content=RETIRED_SAMPLE.read_bytes(),
        etag="0x1",
        store=store,
        platform=platform,
        data_root=Path("."),
    )
    assert record is not None and record.state == RunState.REJECTED
    [error] = [e for e in record.errors if e.path == "model.name"]
    assert "retired for fine-tuning" in error.message and "retired 2025-08-30" in error.message
    assert "Phi-4" in error.message
    assert workspace.jobs == {}  # nothing was submitted


def test_a_deprecated_model_is_submitted_with_a_warning_the_status_repeats(
    settings: Settings, workspace: FakeWorkspace, tmp_path: Path
) -> None:
    from shared.status import status_document

    spec = yaml.safe_load(MODEL_SPEC.read_text())
    spec["system_metadata"]["deprecation"] = {
        "finetuneDeprecationDate": "2020-01-01T00:00:00.000000Z",
        "finetuneRetirementDate": "2999-01-01T00:00:00.000000Z",
    }
    deprecated = tmp_path / "phi-4.model.spec.yaml"
    deprecated.write_text(yaml.safe_dump(spec))
    clock = FakeClock()
    store, _, _ = make_store(clock)
    platform = make_platform(settings, workspace, registry=registry_client(deprecated))
    record = submit_config(
        container="training-configs",
        blob_name="phi4-ultrachat.yaml",
        content=SEED_SAMPLE.read_bytes(),
        etag="0x1",
        store=store,
        platform=platform,
        data_root=Path("."),
    )
    assert record is not None and record.state == RunState.SUBMITTED, record and record.errors
    [warning] = [n for n in record.notes if "deprecated" in n]
    assert warning.startswith(
        "warning: Phi-4 version 8 is deprecated for fine-tuning: fine-tuning deprecated 2020-01-01"
    )
    assert warning in status_document(record)["notes"]
