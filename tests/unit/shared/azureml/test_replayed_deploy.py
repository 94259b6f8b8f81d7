"""Deploying through the real azure-ai-ml SDK against a real workspace's recorded answers: the endpoint, its
creation's long-running operation, the deployment and its operation, the deployment's state and the traffic
update (tests/fixtures/azureml/recordings/online_deployment_create.json, SOURCES.md there).

Each step queues the answers the service gave, in the order the SDK asks for them; a request the recording
has no answer for fails the step, and so does an answer left over (the SDK skipped a call it used to make).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.naming import TAG_IDLE_MINUTES, TAG_RUN_ID, app_tags
from shared.platform.port import DeploymentState, DeployRequest, ModelRef
from shared.settings import Settings
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.azure_fakes import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE
from tests.unit.shared.azureml.replay import (
    ReplayTransport,
    answer_for,
    by_label,
    listing,
    load,
    replay_platform,
    take,
    workspace_path,
    workspace_renames,
)

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

RUN = "phi4-ultrachat-1a2b3c4d"
ENDPOINT = "ft-phi4-ultrachat-5a694724"
DEPLOYMENT = "d-1a2b3c4d"
WORKSPACE_PATH = workspace_path(SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE)
ENDPOINT_PATH = f"{WORKSPACE_PATH}/onlineEndpoints/{ENDPOINT}"
DEPLOYMENT_PATH = f"{ENDPOINT_PATH}/deployments/{DEPLOYMENT}"
MODEL_ID = f"{WORKSPACE_PATH}/models/Phi-4-phi4-ultrachat/versions/3"  # what register_model returns as the id
TAGS = {**app_tags(RUN, "phi4-ultrachat.yaml"), TAG_IDLE_MINUTES: "60"}
# The api-versions azure-ai-ml 1.35.2 sends; the recording (azure-ai-ml 1.26.0) used the same ones.
ENDPOINTS_API = "2022-02-01-preview"
DEPLOYMENTS_API = "2023-04-01-preview"
WORKSPACE_API = "2024-10-01-preview"


def recorded(tags: dict[str, str] = TAGS) -> dict[str, dict[str, Any]]:
    renames = {
        **workspace_renames(SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE),
        "online-ept-a2eef48db44f4a9": ENDPOINT,
        "online-dpm-b0249d5411f7413": DEPLOYMENT,
        "models/1498425f064ef007b4f000a85a5f4645/versions/1": "models/Phi-4-phi4-ultrachat/versions/3",
    }
    # The endpoint and deployment the app creates carry its tags; the service echoes what the PUT sent.
    labelled = by_label(load("online_deployment_create.json", renames, tags=tags))
    # An endpoint without deployments lists none: that answer is in the endpoint recording.
    e2e = by_label(load("online_endpoint_e2e.json", {**renames, "online-ept-6696557f8dec409": ENDPOINT}))
    return {**labelled, "deployments-none": e2e["deployments-none"]}


def missing(method: str, path: str) -> dict[str, Any]:
    return answer_for(by_label(load("model_crud_file.json", {}))["model-versions-not-found"], method, path)


def deploy_request() -> DeployRequest:
    return DeployRequest(
        endpoint_name=ENDPOINT,
        deployment_name=DEPLOYMENT,
        model=ModelRef("Phi-4-phi4-ultrachat", "3", MODEL_ID),
        instance_type="Standard_NC24ads_A100_v4",
        instance_count=1,
        request_timeout_ms=90_000,
        liveness_initial_delay_s=600,
        max_concurrent_requests=2,
        description="Online endpoint for the fine-tuned model",
        tags=dict(TAGS),
    )


def step(transport: ReplayTransport) -> list[tuple[str, str, str | None]]:
    """What the SDK sent since the last step (method, path below the workspace, api-version); the queue must
    be used up."""
    assert transport.unanswered == []
    assert [entry["_label"] for entry in transport.entries] == []
    sent = [(s.method, s.path.removeprefix(WORKSPACE_PATH), s.api_version) for s in transport.sent]
    transport.sent.clear()
    return sent


def test_deploying_creates_the_endpoint_then_the_deployment_and_follows_their_operations(settings: Settings) -> None:
    rec = recorded()
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    deployments = platform._deployments

    # 1. No endpoint yet: the SDK reads the workspace's region and PUTs the endpoint; nothing is awaited.
    transport.queue(missing("GET", ENDPOINT_PATH), *take(rec, "workspace", "endpoint-put-created"))
    transport.queue(*take(rec, "endpoint-operation-updating", "endpoint-operation-succeeded", "endpoint-succeeded"))
    platform.begin_deploy(deploy_request())
    created = deployments._pollers[("endpoint", ENDPOINT)].result()  # the SDK's own poller, polling the replay
    assert created.provisioning_state == "Succeeded"
    put = transport.requests("PUT")[0].json()
    assert step(transport)[:3] == [
        ("GET", f"/onlineEndpoints/{ENDPOINT}", ENDPOINTS_API),
        ("GET", "", WORKSPACE_API),
        ("PUT", f"/onlineEndpoints/{ENDPOINT}", ENDPOINTS_API),
    ]
    assert put["location"] == "eastus"  # the recorded workspace's region
    assert put["properties"]["authMode"] == "Key"
    assert put["properties"]["description"] == "Online endpoint for the fine-tuned model"
    assert {k: v for k, v in put["tags"].items() if k != "autopilot_created_at"} == TAGS
    assert put["tags"]["autopilot_created_at"]  # when the app created it, for idle checks without systemData
    assert transport.slept == [30]  # the interval the endpoint's operation asks for between polls, not slept

    # 2. The endpoint is ready and has no deployment: reconcile hears "Missing".
    transport.queue(*take(rec, "endpoint-succeeded", "deployments-none"), missing("GET", DEPLOYMENT_PATH))
    info = platform.get_deployment(ENDPOINT, DEPLOYMENT)
    assert info.state == DeploymentState.MISSING
    assert info.scoring_uri == f"https://{ENDPOINT}.eastus.inference.ml.azure.com/score"
    assert step(transport)[-1] == ("GET", f"/onlineEndpoints/{ENDPOINT}/deployments/{DEPLOYMENT}", DEPLOYMENTS_API)

    # 3. begin_deploy again now starts the deployment.
    transport.queue(*take(rec, "endpoint-succeeded", "deployments-none"), missing("GET", DEPLOYMENT_PATH))
    transport.queue(*take(rec, "endpoint-succeeded-2023", "workspace", "deployment-put-created"))
    transport.queue(*take(rec, "deployment-operation-updating", "deployment-operation-succeeded"))
    transport.queue(*take(rec, "deployment-succeeded"))
    transport.slept.clear()
    platform.begin_deploy(deploy_request())
    deployed = deployments._pollers[("deployment", ENDPOINT, DEPLOYMENT)].result()
    assert deployed.provisioning_state == "Succeeded"
    sent = transport.requests("PUT")[0]
    assert (sent.path, sent.api_version) == (DEPLOYMENT_PATH, DEPLOYMENTS_API)
    body = sent.json()
    assert body["properties"]["instanceType"] == "Standard_NC24ads_A100_v4"
    assert body["sku"]["capacity"] == 1
    assert body["properties"]["model"] == MODEL_ID
    assert body["properties"]["livenessProbe"]["initialDelay"] == "PT10M"
    assert body["properties"]["requestSettings"]["requestTimeout"] == "PT1M30S"
    assert body["properties"]["requestSettings"]["maxConcurrentRequestsPerInstance"] == 2
    assert body["tags"] == TAGS
    assert body["location"] == "eastus"
    assert body["properties"]["endpointComputeType"] == "Managed"
    # An MLflow model deploys without code or environment (the recording's scoring script and image are not sent).
    assert "codeConfiguration" not in body["properties"] and "environmentId" not in body["properties"]
    step(transport)
    assert transport.slept == [5]  # the SDK's own interval for deployment operations

    # 4. The deployment has succeeded.
    transport.queue(*take(rec, "endpoint-succeeded", "deployments-of-endpoint", "deployment-succeeded"))
    done = platform.get_deployment(ENDPOINT, DEPLOYMENT)
    assert done.state == DeploymentState.SUCCEEDED
    assert done.scoring_uri == f"https://{ENDPOINT}.eastus.inference.ml.azure.com/score"
    step(transport)


def test_a_duplicate_deploy_event_while_the_endpoint_is_created_changes_nothing(settings: Settings) -> None:
    rec = recorded()
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    # The recorded endpoint while it was being created: the PUT's 201 body, given as a read's 200 (the
    # recording polls the operation, not the endpoint, while it is created).
    creating = take(rec, "endpoint-put-created")[0] | {"RequestMethod": "GET", "StatusCode": 200}
    transport.queue(creating, *take(rec, "deployments-none"))
    platform.begin_deploy(deploy_request())
    assert [m for m, _, _ in step(transport)] == ["GET", "GET"]  # read only: no second PUT
    transport.queue(dict(creating), *take(rec, "deployments-none"))
    assert platform.get_deployment(ENDPOINT, DEPLOYMENT).state == DeploymentState.CREATING


def test_traffic_goes_to_the_deployment_once(settings: Settings) -> None:
    rec = recorded()
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)

    transport.queue(*take(rec, "endpoint-succeeded", "deployments-of-endpoint", "workspace", "endpoint-put-traffic"))
    transport.queue(*take(rec, "traffic-operation-updating", "traffic-operation-succeeded", "endpoint-with-traffic"))
    platform.set_traffic(ENDPOINT, {DEPLOYMENT: 100})
    # set_traffic does not wait for the update (the smoke test names its deployment); its poller still polls.
    assert transport.wait_served()
    put = transport.requests("PUT")[0]
    assert (put.path, put.api_version) == (ENDPOINT_PATH, ENDPOINTS_API)
    assert put.json()["properties"]["traffic"] == {DEPLOYMENT: 100}
    assert put.json()["tags"][TAG_RUN_ID] == RUN  # the endpoint's tags are sent back unchanged
    step(transport)

    # Asked again (a retried event): the endpoint already routes there, nothing is sent but the read.
    transport.queue(*take(rec, "endpoint-with-traffic", "deployments-of-endpoint"))
    platform.set_traffic(ENDPOINT, {DEPLOYMENT: 100})
    assert [m for m, _, _ in step(transport)] == ["GET", "GET"]


def test_listing_endpoints_keeps_only_the_apps_with_their_state_and_creation_time(settings: Settings) -> None:
    # The app's endpoint as the recording left it (with traffic), carrying the tags the app wrote at creation
    # (the SDK's OnlineEndpoint has no creation_context: the created_at tag is what idle checks read).
    created = "2025-02-27T10:35:40+00:00"
    ours = recorded({**TAGS, "autopilot_created_at": created})["endpoint-with-traffic"]
    foreign = by_label(load("online_endpoint_e2e.json", workspace_renames(SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE)))
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    path = f"{WORKSPACE_PATH}/onlineEndpoints"
    transport.queue(listing(path, ours, foreign["endpoint-succeeded"], api_version=ENDPOINTS_API))

    found = platform.list_endpoints()

    assert [e.name for e in found] == [ENDPOINT]  # online-ept-6696557f8dec409 has no app tags: not listed
    endpoint = found[0]
    assert endpoint.tags[TAG_RUN_ID] == RUN
    assert endpoint.created_at == datetime.fromisoformat(created)
    assert endpoint.created_at.tzinfo == UTC
    assert f"{endpoint.state}" == "Succeeded"  # as `autopilot endpoints` prints it
    assert endpoint.scoring_uri == f"https://{ENDPOINT}.eastus.inference.ml.azure.com/score"
    assert endpoint.healthy is None
    assert step(transport) == [("GET", "/onlineEndpoints", ENDPOINTS_API)]
