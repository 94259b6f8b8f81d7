"""The platform port's contract, one set of assertions run against every implementation the services meet:
the stateful test fake (tests/fakes.py), the local ML platform, and the Azure ML adapter over its workspace
fake. A behaviour the services rely on that one of them lacks fails here, not in a scenario test.

The port's headline promises (shared/platform/port.py) are here too: a create repeated makes one thing and a
foreign thing of the same name is refused, never adopted; a deployment carrying traffic is not deleted
(``DeploymentHasTraffic``); an endpoint without the app's tags is neither changed nor deleted
(``NotManagedError``); an endpoint holds at most ``MAX_DEPLOYMENTS_PER_ENDPOINT`` deployments."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.exceptions import NotFoundError, NotManagedError, PlatformError, RejectedError
from shared.naming import app_tags
from shared.platform.port import (
    MAX_DEPLOYMENTS_PER_ENDPOINT,
    ComputeRequest,
    DeploymentState,
    DeployRequest,
    MLPlatform,
    ModelRef,
)
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
    # A registered model a deployment can name, made on first use (the local registry takes seconds).
    deployable: Callable[[], ModelRef] = lambda: ModelRef("m", "1", "azureml:m:1")
    # What the platform would do on its own while nobody calls: provisioning finishes (an Azure ML endpoint
    # must have succeeded before its first deployment starts).
    settle: Callable[[str], None] = lambda endpoint: None
    # An endpoint someone else made under this name, without the app's tags.
    add_foreign_endpoint: Callable[[str], None] = lambda name: None
    close: Callable[[], None] = lambda: None


def fake_profile(tmp_path: Path) -> Profile:
    from tests.fakes import FakeEndpoint

    platform = FakePlatform()

    def add_foreign_endpoint(name: str) -> None:
        platform.endpoints[name] = FakeEndpoint(name, {}, platform.clock())

    return Profile(
        platform,
        "Phi-3-mini-4k-instruct",
        "gpu-cluster",
        "Standard_NC24ads_A100_v4",
        "Standard_NC24ads_A100_v4",
        settle=lambda endpoint: platform.complete_deployments(),
        add_foreign_endpoint=add_foreign_endpoint,
    )


def local_profile(tmp_path: Path) -> Profile:
    from local.platform.adapter import LocalPlatform

    settings = Settings.from_env(
        {"AUTOPILOT_PLATFORM": "local", "AUTOPILOT_WORKDIR": str(tmp_path / "w"), "AUTOPILOT_DATA_ROOT": str(tmp_path)}
    )
    from datetime import UTC, datetime

    from local.common import processes
    from local.common.statefiles import write_json_atomic

    platform = LocalPlatform(settings)

    @functools.cache
    def deployable() -> ModelRef:
        # A model the registry holds; its server fails to load it, which no promise here depends on.
        source = tmp_path / "model"
        source.mkdir()
        (source / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: nothing\n")
        model, _ = platform.registry.register(
            name="contract-model",
            source=source,
            mlflow_run_id=None,
            tags=app_tags("m-0000aaaa", "m.yaml"),
            description="",
        )
        return model

    def add_foreign_endpoint(name: str) -> None:
        state = {"schema_version": 1, "name": name, "tags": {}, "port": 1, "state": "Succeeded"}
        state["created_at"] = datetime.now(UTC).isoformat()
        write_json_atomic(settings.workdir / "platform" / "endpoints" / name / "state.json", state)

    def close() -> None:  # the endpoint servers begin_deploy started
        processes.stop_recorded_processes(settings.workdir, timeout_s=5)

    return Profile(
        platform,
        "tiny-random-chat",
        "local-cpu",
        "local-cpu",
        "local-cpu",
        deployable=deployable,
        add_foreign_endpoint=add_foreign_endpoint,
        close=close,
    )


def azureml_profile(tmp_path: Path) -> Profile:
    from azure.ai.ml.entities import AmlCompute, ManagedOnlineEndpoint, Model
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

    def settle(endpoint: str) -> None:
        workspace.set_endpoint_state(endpoint, "Succeeded")
        for ep, name in [key for key in workspace.deployments if key[0] == endpoint]:
            workspace.set_deployment_state(ep, name, "Succeeded")

    def add_foreign_endpoint(name: str) -> None:
        workspace.endpoints[name] = ManagedOnlineEndpoint(name=name, auth_mode="key", tags={})
        workspace.set_endpoint_state(name, "Succeeded")

    return Profile(
        platform,
        "Phi-4",
        "gpu-cluster",
        "Standard_NC24ads_A100_v4",
        "Standard_NC24ads_A100_v4",
        settle=settle,
        add_foreign_endpoint=add_foreign_endpoint,
    )


@pytest.fixture(params=[fake_profile, local_profile, azureml_profile], ids=["fake", "local", "azureml"])
def impl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Profile]:
    profile: Profile = request.param(tmp_path)
    yield profile
    profile.close()


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


# -- the port's headline promises -------------------------------------------------------------------------------
def deploy(impl: Profile, endpoint: str, run: str, *, join: bool = False, deployment: str = "") -> DeployRequest:
    return DeployRequest(
        endpoint,
        deployment or f"d-{run[-8:]}",
        impl.deployable(),
        impl.inference_sku,
        1,
        90_000,
        600,
        1,
        "contract",
        app_tags(run, "line.yaml"),
        join_endpoint=join,
    )


def created(impl: Profile, request: DeployRequest) -> DeployRequest:
    """``begin_deploy`` until the deployment exists (Azure ML starts it once the endpoint has succeeded)."""
    impl.platform.begin_deploy(request)
    impl.settle(request.endpoint_name)
    impl.platform.begin_deploy(request)
    impl.settle(request.endpoint_name)
    return request


def deployment_names(impl: Profile, endpoint: str) -> list[str]:
    return sorted(d.name for d in impl.platform.list_deployments(endpoint))


def test_a_create_repeated_makes_one_endpoint_and_one_deployment(impl: Profile) -> None:
    request = created(impl, deploy(impl, "ft-line-0000aaaa", "line-0000aaaa"))
    impl.platform.begin_deploy(request)  # a retry, as a re-delivered event makes one
    impl.platform.begin_deploy(request)
    assert [e.name for e in impl.platform.list_endpoints()] == ["ft-line-0000aaaa"]
    assert deployment_names(impl, "ft-line-0000aaaa") == [request.deployment_name]
    tags = next(e.tags for e in impl.platform.list_endpoints())
    assert tags["autopilot_run_id"] == "line-0000aaaa" and tags["autopilot_managed"] == "true"


def test_another_runs_endpoint_of_the_same_name_is_refused_not_adopted(impl: Profile) -> None:
    created(impl, deploy(impl, "ft-line-0000aaaa", "line-0000aaaa"))
    with pytest.raises(PlatformError):
        impl.platform.begin_deploy(deploy(impl, "ft-line-0000aaaa", "other-0000bbbb"))
    assert deployment_names(impl, "ft-line-0000aaaa") == ["d-0000aaaa"]
    assert next(e.tags for e in impl.platform.list_endpoints())["autopilot_run_id"] == "line-0000aaaa"


def test_a_deployment_carrying_traffic_is_not_deleted(impl: Profile) -> None:
    request = created(impl, deploy(impl, "ft-line-0000aaaa", "line-0000aaaa"))
    impl.platform.set_traffic(request.endpoint_name, {request.deployment_name: 100})
    with pytest.raises(PlatformError) as refused:
        impl.platform.begin_delete_deployment(request.endpoint_name, request.deployment_name)
    assert refused.value.code == "DeploymentHasTraffic"
    assert deployment_names(impl, request.endpoint_name) == [request.deployment_name]
    impl.platform.set_traffic(request.endpoint_name, {request.deployment_name: 0})
    impl.platform.begin_delete_deployment(request.endpoint_name, request.deployment_name)
    assert deployment_names(impl, request.endpoint_name) == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p, name: p.begin_delete_endpoint(name), id="delete-endpoint"),
        pytest.param(lambda p, name: p.begin_delete_deployment(name, "d-0000aaaa"), id="delete-deployment"),
        pytest.param(lambda p, name: p.set_traffic(name, {}), id="set-traffic"),
    ],
)
def test_an_endpoint_without_the_apps_tags_is_never_changed(
    impl: Profile, change: Callable[[MLPlatform, str], None]
) -> None:
    impl.add_foreign_endpoint("someone-elses")
    with pytest.raises(NotManagedError):
        change(impl.platform, "someone-elses")
    with pytest.raises(NotManagedError):
        impl.platform.begin_deploy(deploy(impl, "someone-elses", "line-0000aaaa", join=True))
    with pytest.raises(NotManagedError):
        impl.platform.begin_deploy(deploy(impl, "someone-elses", "line-0000aaaa"))
    assert impl.platform.list_endpoints() == []  # and it is not listed as the app's


def test_an_endpoint_holds_at_most_the_quota_of_deployments(impl: Profile) -> None:
    endpoint = "ft-line-0000aaaa"
    created(impl, deploy(impl, endpoint, "line-0000aaaa"))
    for n in range(1, MAX_DEPLOYMENTS_PER_ENDPOINT):
        created(impl, deploy(impl, endpoint, f"line-{n:08x}", join=True, deployment=f"d-{n:02d}"))
    assert len(deployment_names(impl, endpoint)) == MAX_DEPLOYMENTS_PER_ENDPOINT
    with pytest.raises(PlatformError) as refused:
        created(impl, deploy(impl, endpoint, "line-ffff0000", join=True, deployment="d-one-too-many"))
    assert refused.value.code == "QuotaExceeded"
    assert len(deployment_names(impl, endpoint)) == MAX_DEPLOYMENTS_PER_ENDPOINT
    created(impl, deploy(impl, endpoint, "line-00000001", join=True, deployment="d-01"))  # a retry still fits
