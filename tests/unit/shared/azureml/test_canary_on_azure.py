"""A canary on Azure ML: the services drive the adapter over the workspace fake. A second run on the same
``deployment.endpoint_name`` adds a deployment to the endpoint, gets its share of the traffic, is compared
with the previous deployment by Azure Monitor's RequestsPerMinute split by ``deployment`` and ``statusCode``,
and is promoted (the old deployment deleted after the grace period) or rolled back."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from shared.platform.azureml.monitor import SPLIT_FILTER
from shared.services.cleanup import cleanup
from shared.services.reconcile import reconcile
from shared.services.submit import submit_config
from shared.settings import Settings
from shared.states import RunState
from tests.fakes import FakeClock, make_store
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.azure_fakes import FakeWorkspace
from tests.unit.shared.azureml.support import SEED_SAMPLE, make_platform

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

TIMEOUT = timedelta(minutes=60)
ENDPOINT = "ft-phi4-line"


class Monitor:
    """Azure Monitor as the metrics client sees it: requests per deployment and status code, one series each;
    the endpoint as a whole has a request in the last minute (so the idle check keeps it)."""

    def __init__(self) -> None:
        self.served: dict[tuple[str, str], float] = {}  # (deployment, status code) -> requests
        self.queries: list[dict[str, Any]] = []

    def query_resources(self, **kwargs: Any) -> list[Any]:
        self.queries.append(kwargs)
        _, until = kwargs["timespan"]
        [rid] = kwargs["resource_ids"][:1]
        if kwargs.get("filter"):
            series = [
                SimpleNamespace(
                    metadata_values={"deployment": dep, "statusCode": code},
                    data=[SimpleNamespace(timestamp=until, total=count, average=None)],
                )
                for (dep, code), count in self.served.items()
            ]
        else:
            series = [SimpleNamespace(metadata_values={}, data=[SimpleNamespace(timestamp=until, total=1.0)])]
        metric = SimpleNamespace(
            name="RequestsPerMinute",
            id=f"{rid}/providers/Microsoft.Insights/metrics/RequestsPerMinute",
            timeseries=series,
        )
        return [SimpleNamespace(metrics=[metric])]


def content(learning_rate: float) -> bytes:
    data = yaml.safe_load(SEED_SAMPLE.read_text())
    data["training"]["learning_rate"] = learning_rate
    data["deployment"].update(
        {"endpoint_name": ENDPOINT, "canary_percent": 10, "observe_minutes": 15, "grace_minutes": 60}
    )
    return yaml.safe_dump(data).encode()


class Line:
    def __init__(self, settings: Settings, workspace: FakeWorkspace) -> None:
        from azure.ai.ml.entities import AmlCompute

        workspace.computes["gpu-cluster-a100"] = AmlCompute(
            name="gpu-cluster-a100", size="Standard_NC24ads_A100_v4", provisioning_state="Succeeded"
        )
        self.workspace = workspace
        self.clock = FakeClock()
        self.store, _, _ = make_store(self.clock)
        self.monitor = Monitor()
        self.platform = make_platform(settings, workspace, metrics=lambda region: self.monitor)
        self.platform._clock = self.clock

    def reconcile(self) -> None:
        reconcile(self.store, self.platform, deploy_timeout=TIMEOUT)

    def run(self, run_id: str) -> Any:
        record = self.store.get(run_id)
        assert record is not None
        return record

    def trained(self, name: str, learning_rate: float) -> Any:
        record = submit_config(
            container="training-configs",
            blob_name=name,
            content=content(learning_rate),
            etag="0x1",
            store=self.store,
            platform=self.platform,
            data_root=Path("."),
        )
        assert record is not None and record.state == RunState.SUBMITTED, record and record.errors
        self.workspace.jobs[record.run_id]._status = "Completed"
        self.reconcile()
        return self.run(record.run_id)

    def first_deployed(self) -> Any:
        first = self.trained("line-v1.yaml", 5e-6)
        self.workspace.set_endpoint_state(ENDPOINT, "Succeeded")
        self.reconcile()
        self.workspace.set_deployment_state(ENDPOINT, first.deployment_name, "Succeeded")
        self.reconcile()
        first = self.run(first.run_id)
        assert first.state == RunState.DEPLOYED
        return first

    def canary(self) -> tuple[Any, Any]:
        first = self.first_deployed()
        second = self.trained("line-v2.yaml", 2e-5)
        assert second.state == RunState.DEPLOYING and second.endpoint_name == ENDPOINT
        assert set(self.workspace.deployments) == {
            (ENDPOINT, first.deployment_name),
            (ENDPOINT, second.deployment_name),
        }
        self.workspace.set_deployment_state(ENDPOINT, second.deployment_name, "Succeeded")
        self.reconcile()
        second = self.run(second.run_id)
        assert second.state == RunState.CANARY, second.errors
        return first, second


def test_a_canary_shares_the_endpoint_then_takes_all_the_traffic_and_the_old_deployment_goes(
    settings: Settings, workspace: FakeWorkspace
) -> None:
    line = Line(settings, workspace)
    first, second = line.canary()
    assert list(workspace.endpoints) == [ENDPOINT]
    assert workspace.endpoints[ENDPOINT].traffic == {first.deployment_name: 90, second.deployment_name: 10}
    assert workspace.invoked[-1]["deployment"] == second.deployment_name  # the smoke test names its deployment

    line.monitor.served = {(second.deployment_name, "200"): 30, (first.deployment_name, "200"): 270}
    line.monitor.served[(first.deployment_name, "503")] = 3
    line.clock.advance(minutes=16)
    line.reconcile()
    split = [q for q in line.monitor.queries if q.get("filter")]
    assert split and split[-1]["filter"] == SPLIT_FILTER == "deployment eq '*' and statusCode eq '*'"
    assert split[-1]["metric_names"] == ["RequestsPerMinute"]
    assert line.run(second.run_id).state == RunState.DEPLOYED
    assert workspace.endpoints[ENDPOINT].traffic == {first.deployment_name: 0, second.deployment_name: 100}

    cleanup(line.store, line.platform)  # within the grace period
    assert (ENDPOINT, first.deployment_name) in workspace.deployments
    line.clock.advance(minutes=61)
    cleanup(line.store, line.platform)
    assert set(workspace.deployments) == {(ENDPOINT, second.deployment_name)} and ENDPOINT in workspace.endpoints
    assert line.run(first.run_id).state == RunState.DELETED


def test_a_canary_answering_5xx_is_rolled_back_and_deleted(settings: Settings, workspace: FakeWorkspace) -> None:
    line = Line(settings, workspace)
    first, second = line.canary()
    line.monitor.served = {
        (second.deployment_name, "200"): 20,
        (second.deployment_name, "500"): 10,
        (first.deployment_name, "200"): 270,
    }
    line.clock.advance(minutes=16)
    line.reconcile()
    failed = line.run(second.run_id)
    assert failed.state == RunState.DEPLOY_FAILED and failed.last_error_code == "CanaryErrorRate"
    assert "10/30" in failed.errors[0].message
    assert workspace.endpoints[ENDPOINT].traffic == {first.deployment_name: 100, second.deployment_name: 0}
    assert set(workspace.deployments) == {(ENDPOINT, first.deployment_name)}
    assert line.run(first.run_id).state == RunState.DEPLOYED


def test_a_refused_canary_start_is_kept_per_deployment_and_the_endpoint_keeps_serving(
    settings: Settings, workspace: FakeWorkspace
) -> None:
    from tests.unit.shared.azureml.azure_fakes import quota_error

    line = Line(settings, workspace)
    first = line.first_deployed()
    workspace.deployment_error = quota_error()
    second = line.trained("line-v2.yaml", 2e-5)  # the deployment start is refused and recorded
    line.reconcile()
    failed = line.run(second.run_id)
    assert failed.state == RunState.DEPLOY_FAILED and failed.last_error_code == "OutOfQuota"
    assert ENDPOINT in workspace.endpoints
    assert line.platform.get_deployment(ENDPOINT, first.deployment_name).state.value == "Succeeded"
    assert workspace.endpoints[ENDPOINT].traffic == {first.deployment_name: 100}
