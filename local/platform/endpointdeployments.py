"""The deployments of a local endpoint, kept in its ``state.json``: add one (a canary beside the deployment it
may replace), remove one, split the traffic, and read each one's state, as a managed online endpoint does.

Functions over an ``EndpointState``; the caller holds the endpoint's lock and writes the state back. The
endpoint's server picks the changes up without a restart (``serving/deployments.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from local.platform.serving.state import DeploymentSpec, EndpointState, ModelSource, ServerState, ServerStatus
from shared.exceptions import NotFoundError, NotManagedError, PlatformError
from shared.naming import TAG_RUN_ID, is_managed
from shared.platform.port import (
    MAX_DEPLOYMENTS_PER_ENDPOINT,
    DeploymentInfo,
    DeploymentState,
    DeploymentSummary,
    DeployRequest,
)


def deployment_spec(request: DeployRequest, model_source: Path) -> DeploymentSpec:
    """What the server needs to serve the requested deployment."""
    return DeploymentSpec(
        model=ModelSource(
            name=request.model.name, version=request.model.version, id=request.model.id, source=str(model_source)
        ),
        instance_type=request.instance_type,
        device="cuda" if request.instance_type.lower() == "local-cuda" else "cpu",
        request_timeout_ms=request.request_timeout_ms,
        max_concurrent_requests=request.max_concurrent_requests,
        tags=dict(request.tags),
        created_at=datetime.now(UTC),
    )


def require_managed(state: EndpointState) -> None:
    if not is_managed(state.tags):
        raise NotManagedError(f"endpoint {state.name} is not managed by the app; it is left alone")


def add_deployment(state: EndpointState, request: DeployRequest, model_source: Path) -> bool:
    """Add the requested deployment at 0% traffic; False when a retry finds it there already."""
    require_managed(state)
    existing = state.deployments.get(request.deployment_name)
    if existing is not None:
        if existing.tags.get(TAG_RUN_ID) != request.tags.get(TAG_RUN_ID):
            raise PlatformError(
                f"endpoint {state.name} already has a deployment {request.deployment_name} of another run",
                code="Conflict",
            )
        return False
    if len(state.deployments) >= MAX_DEPLOYMENTS_PER_ENDPOINT:
        raise PlatformError(
            f"endpoint {state.name} has {len(state.deployments)} deployments; at most {MAX_DEPLOYMENTS_PER_ENDPOINT}",
            code="QuotaExceeded",
        )
    state.deployments = {**state.deployments, request.deployment_name: deployment_spec(request, model_source)}
    return True


def remove_deployment(state: EndpointState, deployment: str) -> bool:
    """Remove ``deployment``; False when it is not there (as deleted as can be). Refused while it has traffic."""
    require_managed(state)
    if deployment not in state.deployments:
        return False
    if state.traffic.get(deployment, 0) > 0:
        raise PlatformError(
            f"deployment {deployment} of endpoint {state.name} carries traffic; move it first",
            code="DeploymentHasTraffic",
        )
    state.deployments = {name: spec for name, spec in state.deployments.items() if name != deployment}
    return True


def set_traffic(state: EndpointState, traffic: dict[str, int]) -> None:
    """The endpoint's traffic split: percentages over its deployments adding up to 100 (or 0)."""
    require_managed(state)
    unknown = [d for d in traffic if d not in state.deployments]
    if unknown:
        raise NotFoundError(f"endpoint {state.name} has no deployment {', '.join(unknown)}")
    if sum(traffic.values()) not in (0, 100):
        raise PlatformError(f"traffic must add up to 100 (or 0), not {sum(traffic.values())}", code="BadArgument")
    state.traffic = {d: int(v) for d, v in traffic.items() if v}


def deployment_info(state: EndpointState, status: ServerStatus | None, deployment: str) -> DeploymentInfo:
    """One deployment's state: the endpoint's, refined by what the server says of the deployment's model."""

    def info(current: DeploymentState, code: str | None = None, message: str | None = None) -> DeploymentInfo:
        return DeploymentInfo(state.name, deployment, current, code, message, state.url())

    current = state.state
    if current == DeploymentState.SUCCEEDED and status is not None and status.deployments is not None:
        # The process answers; each deployment's own model may still load, or have failed to.
        own = status.deployments.get(deployment)
        if own is None or own.state == ServerState.LOADING:
            current = DeploymentState.CREATING  # or added, and not picked up by the server yet
        elif own.state == ServerState.FAILED:
            return info(
                DeploymentState.FAILED,
                own.code or "ModelLoadFailed",
                own.message or "the model could not be loaded",
            )
    if current == DeploymentState.SUCCEEDED and state.process_exited:
        return info(DeploymentState.FAILED, "ResourceNotReady", "the endpoint's server process is not running")
    return info(current, state.error_code, state.error_message)


def summaries(state: EndpointState, status: ServerStatus | None) -> list[DeploymentSummary]:
    return [
        DeploymentSummary(
            name,
            spec.tags.get(TAG_RUN_ID),
            deployment_info(state, status, name).state,
            state.traffic.get(name, 0),
        )
        for name, spec in state.deployments.items()
    ]
