"""Submitting the pipeline job, reading it and registering the trained model through the real azure-ai-ml SDK,
answered by a real workspace's recorded responses (tests/fixtures/azureml/recordings/SOURCES.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.exceptions import PlatformError, RejectedError, TransientPlatformError
from shared.naming import TAG_RUN_ID, app_tags
from shared.platform.port import JobStatus, RegisterRequest
from shared.services.planning import build_plan
from shared.settings import Settings
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.azure_fakes import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE
from tests.unit.shared.azureml.replay import (
    REPLAY_TENANT,
    ReplayCredential,
    ReplayTransport,
    answer_for,
    by_label,
    load,
    replay_platform,
    take,
    workspace_path,
    workspace_renames,
)
from tests.unit.shared.azureml.support import COMPONENT_SPEC, MODEL_ID, offline_platform, registry_client, seed_config

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

RUN = "phi4-ultrachat-1a2b3c4d"
WORKSPACE_PATH = workspace_path(SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE)
REGISTRY_COMPONENT = "azureml://registries/azureml/components/chat_completion_pipeline/versions/0.0.82"
JOBS_API = "2024-01-01-preview"  # azure-ai-ml 1.35.2 and the 2026 recordings (the 2023 one used 2023-08-01-preview)
MODELS_API = "2023-08-01-preview"
RENAMES = workspace_renames(SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE)


def job_request(settings: Settings, run_id: str = RUN) -> Any:
    """The seed's run on Phi-4, planned offline from the real component and model specs."""
    plan = build_plan(
        seed_config(),
        run_id=run_id,
        config_blob="phi4-ultrachat.yaml",
        config_name="phi4-ultrachat",
        platform=offline_platform(settings),
        data_root=Path("."),
    )
    return plan.job


def registry_component() -> Any:
    """The component as ``registry.components.get`` hands it to the adapter: the real spec, carrying the
    registry's asset id (the registry itself is not replayed: no recording reads the ``azureml`` registry)."""
    from azure.ai.ml import load_component

    component = load_component(source=COMPONENT_SPEC)
    component._id = REGISTRY_COMPONENT
    return component


def platform_with_registry(transport: ReplayTransport, settings: Settings, credential: Any = None) -> Any:
    registry = registry_client()
    registry.components.get.return_value = registry_component()
    return replay_platform(transport, settings, credential=credential, registries={"azureml": registry})


# -- submit ---------------------------------------------------------------------------------------------------
def test_submit_puts_one_pipeline_job_named_after_the_run(settings: Settings) -> None:
    request = job_request(settings)
    renames = {**RENAMES, "test_722826276578": request.name}
    job = by_label(load("pipeline_job_create.json", renames, tags=dict(request.tags)))
    workspace = by_label(load("online_endpoint_e2e.json", RENAMES))
    transport = ReplayTransport()
    credential = ReplayCredential()
    platform = platform_with_registry(transport, settings, credential)

    transport.queue(*take(workspace, "workspace"), *take(job, "job-put-created"))
    info = platform.submit_job(request)

    assert (info.name, info.status, info.tags[TAG_RUN_ID]) == (RUN, JobStatus.NOT_STARTED, RUN)
    assert info.progress is not None and info.progress.startswith("NotStarted (https://ml.azure.com/runs/")
    assert transport.unanswered == [] and transport.entries == []
    assert [(s.method, s.path, s.api_version) for s in transport.sent] == [
        ("GET", WORKSPACE_PATH, "2024-10-01-preview"),
        ("PUT", f"{WORKSPACE_PATH}/jobs/{RUN}", JOBS_API),
    ]
    # A pipeline job is sent with the user's Azure ML token, which the SDK checks is for ml.azure.com.
    assert ("https://ml.azure.com/.default",) in credential.scopes
    sent = transport.sent[1].json()["properties"]
    assert sent["jobType"] == "Pipeline"
    assert sent["tags"] == request.tags
    assert sent["experimentName"] == "chat_completion_Phi-4"
    assert sent["settings"]["force_rerun"] is True and sent["settings"]["continue_on_step_failure"] is False
    node = sent["jobs"]["chat_completion_pipeline"]
    assert node["componentId"] == REGISTRY_COMPONENT  # the registry's component, not a copy in the workspace
    inputs = node["inputs"]
    assert inputs["mlflow_model_path"] == {"uri": MODEL_ID, "job_input_type": "mlflow_model"}
    assert inputs["train_file_path"]["uri"].endswith("/train_sft.jsonl")
    assert inputs["learning_rate"] == {"value": "5e-06", "job_input_type": "literal"}
    assert inputs["compute_finetune"]["value"] == "gpu-cluster"
    assert sent["outputs"]["trained_model"]["jobOutputType"] == "mlflow_model"


def test_a_job_the_service_refuses_is_a_clear_error_and_not_retried(settings: Settings) -> None:
    request = job_request(settings)
    refused = by_label(load("pipeline_job_refused.json", {**RENAMES, "test_247784986577": request.name}))
    workspace = by_label(load("online_endpoint_e2e.json", RENAMES))
    transport = ReplayTransport()
    platform = platform_with_registry(transport, settings)

    transport.queue(*take(workspace, "workspace"), *take(refused, "job-put-refused"))
    with pytest.raises(PlatformError) as exc:
        platform.submit_job(request)
    assert not isinstance(exc.value, TransientPlatformError)
    assert f"submitting job {RUN}" in str(exc.value)
    assert "Invalid region eastus2 for operation consume in registry" in str(exc.value)
    assert [s.method for s in transport.sent] == ["GET", "PUT"]  # one attempt, no retry of a 400


# -- get job --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("label", "status"), [("job-running", JobStatus.RUNNING), ("job-failed", JobStatus.FAILED)])
def test_a_recorded_pipeline_job_reads_with_its_status(settings: Settings, label: str, status: JobStatus) -> None:
    tags = app_tags(RUN, "phi4-ultrachat.yaml")
    jobs = by_label(load("pipeline_job_get.json", {**RENAMES, "test_680454434153": RUN}, tags=tags))
    workspace = by_label(load("online_endpoint_e2e.json", RENAMES))
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)

    # jobs.get also reads the workspace (for the studio link); its read from the endpoint recording answers.
    transport.queue(*take(jobs, label), *take(workspace, "workspace"))
    info = platform.get_job(RUN)

    assert (info.name, info.status, info.tags) == (RUN, status, tags)
    # The recorded studio link, with the tenant the SDK takes from the credential's token.
    wsid = f"/subscriptions/{SUBSCRIPTION}/resourcegroups/00000/workspaces/{WORKSPACE}"
    studio = f"https://ml.azure.com/runs/{RUN}?wsid={wsid}&tid={REPLAY_TENANT}"
    assert info.progress == f"{status.value} ({studio})"
    if status == JobStatus.FAILED:
        assert info.error is not None and info.error.endswith(studio)
    else:
        assert info.error is None
    assert transport.unanswered == [] and transport.entries == []
    assert ("GET", f"{WORKSPACE_PATH}/jobs/{RUN}", JOBS_API) in [
        (s.method, s.path, s.api_version) for s in transport.sent
    ]


# -- register -------------------------------------------------------------------------------------------------
# The run whose hash gives the recorded model version: model_version(...-00000002) is 3.
REGISTER_RUN = "phi4-ultrachat-00000002"
MODEL_NAME = "Phi-4-phi4-ultrachat"
VERSION_PATH = f"{WORKSPACE_PATH}/models/{MODEL_NAME}/versions/3"


def register_request() -> RegisterRequest:
    return RegisterRequest(
        job_name=REGISTER_RUN,
        model_name=MODEL_NAME,
        description="Phi-4 fine-tuned on ultrachat",
        tags=app_tags(REGISTER_RUN, "phi4-ultrachat.yaml"),
    )


def recorded_model(tags: dict[str, str] | None) -> dict[str, dict[str, Any]]:
    return by_label(load("model_crud_file.json", {**RENAMES, "test_907403507619": MODEL_NAME}, tags=tags))


def test_register_creates_the_version_from_the_job_output(settings: Settings) -> None:
    request = register_request()
    model = recorded_model(request.tags)
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)

    # No such version yet (the recorded 404 of the missing model), then the SDK's own look at the latest one.
    transport.queue(answer_for(model["model-versions-not-found"], "GET", VERSION_PATH))
    transport.queue(*take(model, "model-versions-not-found", "model-put-created"))
    ref = platform.register_model(request)

    assert (ref.name, ref.version, ref.id) == (MODEL_NAME, "3", VERSION_PATH)
    assert ref.tags == request.tags
    assert transport.unanswered == [] and transport.entries == []
    assert [(s.method, s.path, s.api_version) for s in transport.sent] == [
        ("GET", VERSION_PATH, MODELS_API),
        ("GET", f"{WORKSPACE_PATH}/models/{MODEL_NAME}/versions", MODELS_API),
        ("PUT", VERSION_PATH, MODELS_API),
    ]
    sent = transport.sent[2].json()["properties"]
    assert sent["modelType"] == "mlflow_model"
    assert sent["modelUri"] == f"azureml://jobs/{REGISTER_RUN}/outputs/trained_model"
    assert sent["tags"] == request.tags
    assert sent["description"] == "Phi-4 fine-tuned on ultrachat"


def test_a_retried_register_returns_the_version_it_made(settings: Settings) -> None:
    request = register_request()
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    transport.queue(*take(recorded_model(request.tags), "model-version"))
    ref = platform.register_model(request)
    assert (ref.version, ref.tags[TAG_RUN_ID]) == ("3", REGISTER_RUN)
    assert [s.method for s in transport.sent] == ["GET"]  # found: nothing created


def test_a_version_of_someone_else_is_not_adopted(settings: Settings) -> None:
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    transport.queue(*take(recorded_model(None), "model-version"))  # the recorded tags: foo, abc
    with pytest.raises(RejectedError) as exc:
        platform.register_model(register_request())
    assert exc.value.issues[0].path == "registration.model_name"
    assert [s.method for s in transport.sent] == ["GET"]
