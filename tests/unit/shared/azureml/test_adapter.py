"""AzureMLPlatform against an autospecced MLClient whose side effects keep a workspace's state."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from shared.exceptions import NotManagedError, PlatformError, RejectedError, TransientPlatformError
from shared.naming import TAG_IDLE_MINUTES, TAG_RUN_ID, app_tags
from shared.platform.port import DeploymentState, DeployRequest, JobStatus, ModelRef, RegisterRequest
from shared.services.planning import build_plan
from shared.settings import Settings
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.azure_fakes import FakePoller, FakeWorkspace, quota_error
from tests.unit.shared.azureml.support import RUN_ID, make_platform, seed_config

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

ENDPOINT = "ft-phi3-ultrachat-1a2b3c4d"
DEPLOYMENT = "d-1a2b3c4d"


def job_request(platform: Any, run_id: str = RUN_ID) -> Any:
    plan = build_plan(
        seed_config(),
        run_id=run_id,
        config_blob="phi3-ultrachat.yaml",
        config_name="phi3-ultrachat",
        platform=platform,
        data_root=Path("."),
    )
    return plan.job


def deploy_request(run_id: str = RUN_ID) -> DeployRequest:
    model = ModelRef("Phi-4-phi3-ultrachat", "10", "azureml:Phi-4-phi3-ultrachat:10")
    return DeployRequest(
        endpoint_name=ENDPOINT,
        deployment_name=DEPLOYMENT,
        model=model,
        instance_type="Standard_NC24ads_A100_v4",
        instance_count=1,
        request_timeout_ms=90_000,
        liveness_initial_delay_s=600,
        max_concurrent_requests=2,
        description="Online endpoint for the fine-tuned model",
        tags={**app_tags(run_id, "phi3-ultrachat.yaml"), TAG_IDLE_MINUTES: "60"},
    )


# -- jobs ---------------------------------------------------------------------------------------------------
def test_submit_creates_one_job_named_after_the_run(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    request = job_request(platform)
    info = platform.submit_job(request)
    assert (info.name, info.status, info.tags[TAG_RUN_ID]) == (RUN_ID, JobStatus.NOT_STARTED, RUN_ID)
    workspace.client.jobs.create_or_update.assert_called_once()
    job = workspace.jobs[RUN_ID]
    assert job.experiment_name == "chat_completion_Phi-4"
    assert job.settings.force_rerun is True

    # A retried submit meets "already exists", finds this run's job and accepts it.
    again = platform.submit_job(request)
    assert again.name == RUN_ID
    assert list(workspace.jobs) == [RUN_ID]
    workspace.client.jobs.get.assert_called_once_with(RUN_ID)


def test_a_foreign_job_under_the_run_name_is_not_adopted(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    request = job_request(platform)
    platform.submit_job(request)
    workspace.jobs[RUN_ID].tags = {TAG_RUN_ID: "someone-else-00000000"}
    with pytest.raises(PlatformError, match="belongs to run someone-else-00000000"):
        platform.submit_job(request)


def test_submit_maps_throttling_to_a_transient_error(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    throttled = HttpResponseError(message="(TooManyRequests) slow down")
    throttled.status_code = 429
    workspace.client.jobs.create_or_update.side_effect = throttled
    with pytest.raises(TransientPlatformError):
        platform.submit_job(job_request(platform))


@pytest.mark.parametrize(
    ("azure_status", "status"),
    [
        ("Starting", JobStatus.PREPARING),
        ("Running", JobStatus.RUNNING),
        ("Completed", JobStatus.COMPLETED),
        ("Failed", JobStatus.FAILED),
        ("Canceled", JobStatus.CANCELED),
        ("CancelRequested", JobStatus.RUNNING),
    ],
)
def test_job_status_is_mapped(
    settings: Settings, workspace: FakeWorkspace, azure_status: str, status: JobStatus
) -> None:
    platform = make_platform(settings, workspace)
    platform.submit_job(job_request(platform))
    workspace.jobs[RUN_ID]._status = azure_status
    info = platform.get_job(RUN_ID)
    assert info.status == status
    assert (info.error is not None) == (status == JobStatus.FAILED)


def test_get_job_of_an_unknown_job_is_not_found(settings: Settings, workspace: FakeWorkspace) -> None:
    from shared.exceptions import NotFoundError

    with pytest.raises(NotFoundError):
        make_platform(settings, workspace).get_job("nope-00000000")


# -- models -------------------------------------------------------------------------------------------------
def test_model_version_is_derived_from_the_run_and_is_a_positive_32_bit_integer() -> None:
    from shared.platform.azureml.adapter import MAX_MODEL_VERSION, model_version

    assert model_version("phi3-ultrachat-0000000a") == "11"
    assert model_version(RUN_ID) == str(0x1A2B3C4D + 1)
    # The edges of the hash: 0 would be no version at all, ffffffff is past 2^31-1.
    assert model_version("phi3-ultrachat-00000000") == "1"
    assert 1 <= int(model_version("phi3-ultrachat-ffffffff")) <= MAX_MODEL_VERSION == 2**31 - 1
    assert int(model_version("phi3-ultrachat-7fffffff")) <= MAX_MODEL_VERSION
    assert model_version("odd-run-id") == model_version("odd-run-id")
    assert model_version("odd-run-id").isdigit()


def test_register_creates_one_version_and_a_retry_returns_it(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    request = RegisterRequest(
        job_name=RUN_ID,
        model_name="Phi-4-ultrachat-200k",
        description="fine-tuned",
        tags=app_tags(RUN_ID, "phi3-ultrachat.yaml"),
    )
    first = platform.register_model(request)
    assert first.version == str(0x1A2B3C4D + 1)
    stored = workspace.models[("Phi-4-ultrachat-200k", first.version)]
    assert stored.path == f"azureml://jobs/{RUN_ID}/outputs/trained_model"
    assert stored.type == "mlflow_model"
    assert stored.description == "fine-tuned"
    assert stored.tags[TAG_RUN_ID] == RUN_ID

    assert platform.register_model(request) == first
    workspace.client.models.create_or_update.assert_called_once()
    assert platform.get_model(first.name, first.version) == first


def test_a_foreign_model_version_is_not_adopted(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    request = RegisterRequest(RUN_ID, "m", "d", app_tags(RUN_ID, "c.yaml"))
    platform.register_model(request)
    workspace.models[("m", str(0x1A2B3C4D + 1))].tags = {}
    with pytest.raises(RejectedError) as exc:
        platform.register_model(request)
    assert exc.value.issues[0].path == "registration.model_name"


def test_aliases_are_tags_on_the_versions_and_move_between_them(settings: Settings, workspace: FakeWorkspace) -> None:
    # Azure ML's MLflow registry documents no aliases: each is an ``autopilot_alias_<alias>`` tag (adapter.py).
    platform = make_platform(settings, workspace)
    other = "phi3-ultrachat-9f8e7d6c"
    v1 = platform.register_model(RegisterRequest(RUN_ID, "m", "d", app_tags(RUN_ID, "c.yaml"))).version
    v2 = platform.register_model(RegisterRequest(other, "m", "d", app_tags(other, "c.yaml"))).version
    platform.set_model_alias("m", "champion", v1)
    platform.set_model_alias("m", "challenger", v2)
    assert platform.model_aliases("m") == {"champion": v1, "challenger": v2}
    platform.set_model_alias("m", "champion", v2)
    platform.delete_model_alias("m", "challenger")
    assert platform.model_aliases("m") == {"champion": v2}
    assert workspace.models[("m", v2)].tags["autopilot_alias_champion"] == "true"
    assert "autopilot_alias_champion" not in workspace.models[("m", v1)].tags
    assert workspace.models[("m", v1)].tags[TAG_RUN_ID] == RUN_ID  # the other tags stay
    workspace.models[("m", v1)].tags = {}  # not the app's any more
    with pytest.raises(NotManagedError):
        platform.set_model_alias("m", "champion", v1)


# -- endpoints ----------------------------------------------------------------------------------------------
def test_deploy_starts_the_endpoint_then_the_deployment_without_waiting(
    settings: Settings, workspace: FakeWorkspace
) -> None:
    platform = make_platform(settings, workspace)
    request = deploy_request()

    platform.begin_deploy(request)
    endpoint = workspace.endpoints[ENDPOINT]
    assert endpoint.auth_mode == "key"
    assert endpoint.tags[TAG_RUN_ID] == RUN_ID and endpoint.tags[TAG_IDLE_MINUTES] == "60"
    assert "autopilot_created_at" in endpoint.tags
    assert workspace.deployments == {}
    assert platform.get_deployment(ENDPOINT, DEPLOYMENT).state == DeploymentState.CREATING

    platform.begin_deploy(request)  # a duplicate event while the endpoint is still being created
    assert workspace.client.online_endpoints.begin_create_or_update.call_count == 1

    workspace.set_endpoint_state(ENDPOINT, "Succeeded")
    missing = platform.get_deployment(ENDPOINT, DEPLOYMENT)
    assert missing.state == DeploymentState.MISSING  # reconcile answers with begin_deploy
    platform.begin_deploy(request)
    deployment = workspace.deployments[(ENDPOINT, DEPLOYMENT)]
    assert deployment.instance_type == "Standard_NC24ads_A100_v4"
    assert deployment.instance_count == 1
    assert deployment.model == "azureml:Phi-4-phi3-ultrachat:10"
    assert deployment.liveness_probe.initial_delay == 600
    assert deployment.request_settings.request_timeout_ms == 90_000
    assert deployment.request_settings.max_concurrent_requests_per_instance == 2
    assert platform.get_deployment(ENDPOINT, DEPLOYMENT).state == DeploymentState.CREATING

    platform.begin_deploy(request)
    assert workspace.client.online_deployments.begin_create_or_update.call_count == 1
    workspace.set_deployment_state(ENDPOINT, DEPLOYMENT, "Succeeded")
    done = platform.get_deployment(ENDPOINT, DEPLOYMENT)
    assert done.state == DeploymentState.SUCCEEDED
    assert done.scoring_uri == f"https://{ENDPOINT}.eastus.inference.ml.azure.com/score"


def test_a_quota_refusal_is_reported_with_its_code_on_the_next_look(
    settings: Settings, workspace: FakeWorkspace
) -> None:
    platform = make_platform(settings, workspace)
    platform.begin_deploy(deploy_request())
    workspace.set_endpoint_state(ENDPOINT, "Succeeded")
    workspace.deployment_error = quota_error()

    platform.begin_deploy(deploy_request())  # the refusal is recorded, not raised into the timer
    # A new process (another worker) sees it too: it is on the endpoint, not in memory.
    fresh = make_platform(settings, workspace)
    info = fresh.get_deployment(ENDPOINT, DEPLOYMENT)
    assert (info.state, info.error_code) == (DeploymentState.FAILED, "OutOfQuota")
    assert "Not enough quota" in (info.error_message or "")

    fresh.begin_delete_endpoint(ENDPOINT)  # reconcile cleans up what it created
    assert workspace.endpoints == {}


def test_a_transient_refusal_is_raised_for_a_retry(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    platform.begin_deploy(deploy_request())
    workspace.set_endpoint_state(ENDPOINT, "Succeeded")
    unavailable = HttpResponseError(message="(ServiceUnavailable) try later")
    unavailable.status_code = 503
    workspace.deployment_error = unavailable
    with pytest.raises(TransientPlatformError):
        platform.begin_deploy(deploy_request())
    assert "autopilot_deploy_error" not in workspace.endpoints[ENDPOINT].tags


@pytest.mark.parametrize(
    ("poller_error", "state", "code"),
    [
        (HttpResponseError(message="(ImageBuildFailure) the image did not build"), "Failed", "ImageBuildFailure"),
        (HttpResponseError(message="(ResourceNotReady) User container has crashed"), "Failed", "ResourceNotReady"),
        (None, "Failed", "DeploymentFailed"),
        (None, "Canceled", "OperationCanceled"),
    ],
)
def test_failed_deployment_codes(
    settings: Settings, workspace: FakeWorkspace, poller_error: Exception | None, state: str, code: str
) -> None:
    platform = make_platform(settings, workspace)
    platform.begin_deploy(deploy_request())
    workspace.set_endpoint_state(ENDPOINT, "Succeeded")
    put = workspace.client.online_deployments.begin_create_or_update.side_effect

    def failing_put(deployment: Any) -> FakePoller:
        put(deployment)
        return FakePoller(error=poller_error)

    workspace.client.online_deployments.begin_create_or_update.side_effect = failing_put
    platform.begin_deploy(deploy_request())
    workspace.set_deployment_state(ENDPOINT, DEPLOYMENT, state)
    info = platform.get_deployment(ENDPOINT, DEPLOYMENT)
    assert (info.state, info.error_code) == (DeploymentState.FAILED, code)


def test_failed_endpoint_is_a_failed_deployment(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    platform.begin_deploy(deploy_request())
    workspace.set_endpoint_state(ENDPOINT, "Failed")
    info = platform.get_deployment(ENDPOINT, DEPLOYMENT)
    assert (info.state, info.error_code) == (DeploymentState.FAILED, "EndpointFailed")
    assert platform.get_deployment("ft-gone-00000000", DEPLOYMENT).state == DeploymentState.MISSING


def test_foreign_endpoints_are_never_touched(settings: Settings, workspace: FakeWorkspace) -> None:
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    workspace.client.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name=ENDPOINT, tags={"team": "x"}))
    workspace.client.online_endpoints.begin_create_or_update.reset_mock()
    platform = make_platform(settings, workspace)
    with pytest.raises(NotManagedError):
        platform.begin_deploy(deploy_request())
    with pytest.raises(NotManagedError):
        platform.begin_delete_endpoint(ENDPOINT)
    with pytest.raises(NotManagedError):
        platform.set_traffic(ENDPOINT, {DEPLOYMENT: 100})
    assert platform.list_endpoints() == []
    assert ENDPOINT in workspace.endpoints
    workspace.client.online_endpoints.begin_create_or_update.assert_not_called()
    workspace.client.online_endpoints.begin_delete.assert_not_called()


def test_another_runs_endpoint_is_not_adopted(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    platform.begin_deploy(deploy_request("other-run-99999999"))
    with pytest.raises(NotManagedError):
        platform.begin_deploy(deploy_request())


def test_traffic_invoke_list_and_delete(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    platform.begin_deploy(deploy_request())
    workspace.set_endpoint_state(ENDPOINT, "Succeeded")

    platform.set_traffic(ENDPOINT, {DEPLOYMENT: 100})
    platform.set_traffic(ENDPOINT, {DEPLOYMENT: 100})  # already so: no second update
    assert workspace.endpoints[ENDPOINT].traffic == {DEPLOYMENT: 100}
    assert workspace.client.online_endpoints.begin_create_or_update.call_count == 2

    payload = {"input_data": {"input_string": [[{"role": "user", "content": "hi"}]], "parameters": {}}, "params": {}}
    answer = platform.invoke(ENDPOINT, DEPLOYMENT, payload)
    assert answer == [{"0": "Pack layers, water and a map."}]
    [call] = workspace.invoked
    assert (call["endpoint"], call["deployment"], call["payload"]) == (ENDPOINT, DEPLOYMENT, payload)
    assert not os.path.exists(call["file"])  # the request file is removed

    [listed] = platform.list_endpoints()
    assert (listed.name, listed.tags[TAG_RUN_ID], listed.state) == (ENDPOINT, RUN_ID, "Succeeded")
    assert listed.created_at is not None

    platform.begin_delete_endpoint(ENDPOINT)
    workspace.client.online_endpoints.begin_delete.assert_called_once_with(name=ENDPOINT)
    platform.begin_delete_endpoint(ENDPOINT)  # already gone: success
    assert workspace.client.online_endpoints.begin_delete.call_count == 1


def test_invoke_failure_is_a_platform_error(settings: Settings, workspace: FakeWorkspace) -> None:
    platform = make_platform(settings, workspace)
    refused = HttpResponseError(message="(BadArgument) input_data is malformed")
    refused.status_code = 400
    workspace.client.online_endpoints.invoke.side_effect = refused
    with pytest.raises(PlatformError) as exc:
        platform.invoke(ENDPOINT, DEPLOYMENT, {"input_data": {}})
    assert exc.value.code == "BadArgument"


def test_unconfigured_workspace_is_a_clear_error(settings: Settings) -> None:
    from shared.platform.azureml.adapter import AzureMLPlatform

    platform = AzureMLPlatform(replace(settings, azureml_subscription_id="", azureml_workspace_name=""))
    with pytest.raises(PlatformError, match="set AZUREML_SUBSCRIPTION_ID, AZUREML_WORKSPACE_NAME"):
        platform.get_job(RUN_ID)


def test_a_job_the_sdk_refuses_is_a_rejection(settings: Settings, workspace: FakeWorkspace) -> None:
    from azure.ai.ml.exceptions import ValidationException

    platform = make_platform(settings, workspace)
    workspace.client.jobs.create_or_update.side_effect = ValidationException(
        message="jobs.chat_completion_pipeline.inputs.deepspeed_stage: not in ['2', '3']",
        no_personal_data_message="invalid input",
    )
    with pytest.raises(RejectedError) as exc:
        platform.submit_job(job_request(platform))
    [issue] = exc.value.issues
    assert issue.path == "job" and "deepspeed_stage" in issue.message


def test_only_app_tagged_jobs_and_model_versions_are_listed(settings: Settings, workspace: FakeWorkspace) -> None:
    # The orphan sweep's view of the workspace (shared/services/orphans.py): the app's things, never others'.
    from azure.ai.ml.entities import Model

    platform = make_platform(settings, workspace)
    platform.submit_job(job_request(platform))
    foreign = job_request(platform, "someone-else-99999999")
    platform.submit_job(foreign)
    workspace.jobs["someone-else-99999999"].tags = {"team": "x"}
    platform.submit_job(job_request(platform, "second-run-0000bbbb"))
    dotted = job_request(platform, "dotted-run-0000aaaa")
    platform.submit_job(dotted)
    # Dotted keys are no tags of the app's (shared/naming.py): such a job is someone else's.
    workspace.jobs["dotted-run-0000aaaa"].tags = {
        "autopilot.run_id": "dotted-run-0000aaaa",
        "autopilot.managed": "true",
    }
    assert {(j.name, j.tags[TAG_RUN_ID]) for j in platform.list_jobs()} == {
        (RUN_ID, RUN_ID),
        ("second-run-0000bbbb", "second-run-0000bbbb"),
    }
    assert len(platform.list_jobs(limit=1)) == 1

    mine = platform.register_model(RegisterRequest(RUN_ID, "m", "d", app_tags(RUN_ID, "c.yaml")))
    workspace.models[("other", "1")] = Model(name="other", version="1", path="x", tags={"team": "x"})
    assert [(m.name, m.version) for m in platform.list_models()] == [(mine.name, mine.version)]
