"""The deployments of a local endpoint, on its state alone (no server process): a canary joins at 0% traffic,
at most 20 deployments, traffic adds up to 100, a deployment with traffic is not deleted, and each one's state
comes from the endpoint's and from what the server says of its model."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from local.platform import endpointdeployments as deployments
from local.platform.serving.state import EndpointState, LoadStatus, ServerState, ServerStatus
from shared.exceptions import NotFoundError, NotManagedError, PlatformError
from shared.platform.port import MAX_DEPLOYMENTS_PER_ENDPOINT, DeploymentState, DeployRequest, ModelRef

MANAGED = {"autopilot_run_id": "run-a", "autopilot_managed": "true"}


def request(deployment: str, run: str = "run-b") -> DeployRequest:
    return DeployRequest(
        endpoint_name="e",
        deployment_name=deployment,
        model=ModelRef("m", "1", "models:/m/1"),
        instance_type="local-cpu",
        instance_count=1,
        request_timeout_ms=5_000,
        liveness_initial_delay_s=10,
        max_concurrent_requests=2,
        description="",
        tags={**MANAGED, "autopilot_run_id": run},
        join_endpoint=True,
    )


def endpoint(tags: dict[str, str] = MANAGED) -> EndpointState:
    first = deployments.deployment_spec(request("blue", "run-a"), Path("/models/blue"))
    return EndpointState(
        name="e",
        tags=tags,
        created_at=first.created_at,
        port=1234,
        state=DeploymentState.SUCCEEDED,
        deployments={"blue": first},
        traffic={"blue": 100},
    )


def test_a_canary_joins_at_no_traffic_and_a_retry_changes_nothing() -> None:
    state = endpoint()
    assert deployments.add_deployment(state, request("green"), Path("/models/green"))
    assert list(state.deployments) == ["blue", "green"] and state.traffic == {"blue": 100}
    assert state.deployments["green"].model.source == "/models/green" and state.deployments["green"].device == "cpu"
    assert not deployments.add_deployment(state, request("green"), Path("/models/green"))
    with pytest.raises(PlatformError, match="of another run") as conflict:
        deployments.add_deployment(state, request("green", run="run-c"), Path("/models/green"))
    assert conflict.value.code == "Conflict"


def test_at_most_twenty_deployments() -> None:
    state = endpoint()
    for index in range(1, MAX_DEPLOYMENTS_PER_ENDPOINT):
        deployments.add_deployment(state, request(f"d-{index}"), Path("/m"))
    with pytest.raises(PlatformError, match=f"at most {MAX_DEPLOYMENTS_PER_ENDPOINT}") as full:
        deployments.add_deployment(state, request("one-more"), Path("/m"))
    assert full.value.code == "QuotaExceeded"


def test_traffic_adds_up_to_100_over_known_deployments() -> None:
    state = endpoint()
    deployments.add_deployment(state, request("green"), Path("/m"))
    deployments.set_traffic(state, {"blue": 10, "green": 90})
    assert state.traffic == {"blue": 10, "green": 90}
    deployments.set_traffic(state, {"blue": 0, "green": 100})
    assert state.traffic == {"green": 100}
    with pytest.raises(PlatformError, match="add up to 100") as bad:
        deployments.set_traffic(state, {"blue": 50})
    assert bad.value.code == "BadArgument"
    with pytest.raises(NotFoundError, match="red"):
        deployments.set_traffic(state, {"red": 100})


def test_a_deployment_with_traffic_is_not_deleted_and_a_missing_one_is_deleted_already() -> None:
    state = endpoint()
    with pytest.raises(PlatformError) as refused:
        deployments.remove_deployment(state, "blue")
    assert refused.value.code == "DeploymentHasTraffic"
    assert not deployments.remove_deployment(state, "red")
    deployments.set_traffic(state, {})
    assert deployments.remove_deployment(state, "blue") and state.deployments == {}


def test_an_endpoint_without_the_app_tags_is_left_alone() -> None:
    state = endpoint(tags={})
    with pytest.raises(NotManagedError):
        deployments.add_deployment(state, request("green"), Path("/m"))
    with pytest.raises(NotManagedError):
        deployments.remove_deployment(state, "blue")


def status(**deployment_states: LoadStatus) -> ServerStatus:
    return ServerStatus(state=ServerState.READY, deployments=deployment_states, at=datetime.now(UTC))


@pytest.mark.parametrize(
    ("server", "expected", "code"),
    [
        (None, DeploymentState.SUCCEEDED, None),  # no status yet: the endpoint's own state
        (ServerStatus(state=ServerState.LOADING, at=datetime.now(UTC)), DeploymentState.SUCCEEDED, None),
        (status(blue=LoadStatus(state=ServerState.READY)), DeploymentState.SUCCEEDED, None),
        (status(blue=LoadStatus(state=ServerState.LOADING)), DeploymentState.CREATING, None),
        (status(), DeploymentState.CREATING, None),  # added; the server has not picked it up yet
        (
            status(blue=LoadStatus(state=ServerState.FAILED, message="no weights")),
            DeploymentState.FAILED,
            "ModelLoadFailed",
        ),
    ],
)
def test_a_deployments_state_refines_the_endpoints_with_the_servers_word(
    server: ServerStatus | None, expected: DeploymentState, code: str | None
) -> None:
    info = deployments.deployment_info(endpoint(), server, "blue")
    assert (info.state, info.error_code) == (expected, code)
    assert info.scoring_uri == "http://127.0.0.1:1234/score"


def test_a_deployed_endpoint_whose_process_exited_fails_its_deployments() -> None:
    state = endpoint()
    state.process_exited = True
    info = deployments.deployment_info(state, status(blue=LoadStatus(state=ServerState.READY)), "blue")
    assert (info.state, info.error_code) == (DeploymentState.FAILED, "ResourceNotReady")
    summaries = deployments.summaries(state, None)
    assert [(s.name, s.run_id, s.state, s.traffic) for s in summaries] == [
        ("blue", "run-a", DeploymentState.FAILED, 100)
    ]
