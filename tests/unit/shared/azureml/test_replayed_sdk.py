"""The adapter's endpoint calls through the real azure-ai-ml SDK, answered by a real workspace's recorded
responses (tests/fixtures/azureml/recordings/SOURCES.md)."""

from __future__ import annotations

import pytest

from shared.exceptions import NotManagedError
from shared.naming import app_tags
from shared.settings import Settings
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.azure_fakes import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE
from tests.unit.shared.azureml.replay import (
    RECORDED_GROUP,
    RECORDED_SUBSCRIPTION,
    RECORDED_WORKSPACE,
    ReplayTransport,
    load,
    replay_platform,
)

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

RUN = "phi4-ultrachat-1a2b3c4d"
ENDPOINT = "ft-phi4-ultrachat-5a694724"
RECORDED_ENDPOINT = "online-ept-6696557f8dec409"
PINNED_ONLINE_API = "2022-02-01-preview"  # what azure-ai-ml 1.35.2 sends for online endpoints; also recorded


def platform_on(transport: ReplayTransport, settings: Settings) -> object:
    return replay_platform(transport, settings)


def renames() -> dict[str, str]:
    return {
        f"/subscriptions/{RECORDED_SUBSCRIPTION}/": f"/subscriptions/{SUBSCRIPTION}/",
        f"/resourceGroups/{RECORDED_GROUP}/": f"/resourceGroups/{RESOURCE_GROUP}/",
        f"/workspaces/{RECORDED_WORKSPACE}/": f"/workspaces/{WORKSPACE}/",
        RECORDED_ENDPOINT: ENDPOINT,
    }


def test_deleting_a_managed_endpoint_reads_it_then_starts_the_delete(settings: Settings) -> None:
    # The recorded endpoint, renamed and carrying the app's tags, as the app would have created it.
    transport = ReplayTransport(load("online_endpoint_e2e.json", renames(), tags=app_tags(RUN, "phi4-ultrachat.yaml")))
    platform = platform_on(transport, settings)

    platform.begin_delete_endpoint(ENDPOINT)  # type: ignore[attr-defined]

    # online_endpoints.get reads the endpoint and then its deployments (as in the recording), then the delete.
    calls = [(s.method, s.path.rsplit("/", 1)[-1]) for s in transport.sent[:3]]
    assert calls == [("GET", ENDPOINT), ("GET", "deployments"), ("DELETE", ENDPOINT)]
    workspace_path = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{WORKSPACE}/onlineEndpoints/{ENDPOINT}"
    )
    assert [s.path for s in transport.sent[:3]] == [workspace_path, f"{workspace_path}/deployments", workspace_path]
    assert all(s.query["api-version"] == [PINNED_ONLINE_API] for s in transport.sent[:3])


def test_the_recorded_endpoint_as_it_is_is_foreign_and_left_alone(settings: Settings) -> None:
    # Its recorded tags (endpointkey1, dummy) are not the app's: no delete may be sent.
    transport = ReplayTransport(load("online_endpoint_e2e.json", renames()))
    platform = platform_on(transport, settings)
    with pytest.raises(NotManagedError):
        platform.begin_delete_endpoint(ENDPOINT)  # type: ignore[attr-defined]
    assert [s.method for s in transport.sent] == ["GET", "GET"]  # the endpoint and its deployments; no DELETE


def test_a_succeeded_endpoint_is_read_with_its_scoring_uri_and_region(settings: Settings) -> None:
    transport = ReplayTransport(load("online_endpoint_e2e.json", renames(), tags=app_tags(RUN, "phi4-ultrachat.yaml")))
    platform = platform_on(transport, settings)
    endpoint = platform._endpoints.endpoint(ENDPOINT)  # type: ignore[attr-defined]
    assert endpoint.provisioning_state == "Succeeded"
    assert endpoint.scoring_uri == f"https://{ENDPOINT}.westus.inference.ml.azure.com/score"
    assert endpoint.location == "westus"
    assert endpoint.id.endswith(f"/workspaces/{WORKSPACE}/onlineEndpoints/{ENDPOINT}")
