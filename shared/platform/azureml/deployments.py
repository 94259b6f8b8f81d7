"""Deploying: the endpoint and then the deployment, started with ``begin_*`` and never awaited.

Azure ML refuses a deployment on an endpoint that is still being created, and a function must not wait the
minutes that takes. So deploying is two steps driven by the reconcile timer:
1. ``begin_deploy`` starts the endpoint (key auth, the app's tags) and returns;
2. ``get_deployment`` reports ``Creating`` while the endpoint is provisioning and ``Missing`` once it is
   ready without a deployment; reconcile answers ``Missing`` with ``begin_deploy`` again, which now starts
   the deployment. Every call is idempotent: an existing endpoint or deployment is never created twice.

Why a deployment failed is not part of the resource Azure returns. It is taken from the failed start
request (quota and argument errors come back at once; they are written onto the endpoint as the
``autopilot_deploy_error`` tag, so any worker sees them), or from the operation poller when the same process
started it; otherwise the code is ``DeploymentFailed``.

Reading, listing, traffic, deleting and invoking are ``endpoints.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.ai.ml.entities import (
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    OnlineRequestSettings,
    ProbeSettings,
)
from azure.core.exceptions import AzureError, HttpResponseError

from shared.exceptions import NotFoundError, NotManagedError, PlatformError
from shared.naming import TAG_RUN_ID
from shared.platform.azureml.endpoints import (
    DEPLOYMENT_STATES,
    TAG_CREATED_AT,
    Endpoints,
    resource_state,
    resource_tags,
)
from shared.platform.azureml.errors import azure_call, error_code, is_retryable, short, translate, with_remedy
from shared.platform.port import MAX_DEPLOYMENTS_PER_ENDPOINT, DeploymentInfo, DeploymentState, DeployRequest

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

log = logging.getLogger(__name__)

# Underscores, as every tag the app writes (shared/naming.py: Event Grid filter keys cannot escape a '.').
TAG_DEPLOY_ERROR = "autopilot_deploy_error"
TAG_DEPLOY_ERROR_MESSAGE = "autopilot_deploy_error_message"


def _deploy_error_key(deployment_name: str, joined: bool) -> str:
    """Where a refused start is kept: per deployment on a shared endpoint (a canary's refusal is not the
    serving deployment's), under the plain key on the run's own endpoint (as before there were several)."""
    # '-' never occurs in the plain keys, so no deployment name makes one of them (say, a deployment "message").
    return f"{TAG_DEPLOY_ERROR}-{deployment_name}" if joined else TAG_DEPLOY_ERROR


def _message_key(key: str) -> str:
    return key.replace(TAG_DEPLOY_ERROR, TAG_DEPLOY_ERROR_MESSAGE, 1)


class Deployments:
    """Starting endpoints and deployments and reporting their state; keeps the pollers it started (for
    failure codes)."""

    def __init__(self, endpoints: Endpoints, workspace: Callable[[], MLClient], clock: Callable[[], datetime]) -> None:
        self._endpoints = endpoints
        self._workspace = workspace
        self._clock = clock
        self._pollers: dict[tuple[str, ...], Any] = {}

    def _poller_error(self, key: tuple[str, ...]) -> tuple[str | None, str | None]:
        poller = self._pollers.get(key)
        if poller is None or not poller.done():
            return None, None
        try:
            poller.result(timeout=0)
        except AzureError as exc:
            return error_code(exc), short(str(exc))
        return None, None

    def begin_deploy(self, request: DeployRequest) -> None:
        run_id = request.tags.get(TAG_RUN_ID)
        # Joining (a canary): any app-managed endpoint; otherwise only this run's own.
        endpoint = self._endpoints.managed_endpoint(request.endpoint_name, None if request.join_endpoint else run_id)
        if endpoint is None:
            if request.join_endpoint:
                raise NotFoundError(f"endpoint {request.endpoint_name} does not exist", "ResourceNotFound")
            self._begin_endpoint(request)
            return
        state = resource_state(endpoint)
        if state != "succeeded":
            log.info("endpoint %s is %s; the deployment starts once it has succeeded", request.endpoint_name, state)
            return
        if _deploy_error_key(request.deployment_name, request.join_endpoint) in resource_tags(endpoint):
            return  # a start that failed before; get_deployment reports it
        existing = self._endpoints.deployment(request.endpoint_name, request.deployment_name)
        if existing is not None:
            if resource_tags(existing).get(TAG_RUN_ID) != run_id:
                raise NotManagedError(
                    f"endpoint {request.endpoint_name} already has a deployment {request.deployment_name} of "
                    "another run (choose another deployment.deployment_name)",
                    "Conflict",
                )
            return
        if request.join_endpoint:
            with azure_call(f"listing the deployments of {request.endpoint_name}"):
                count = len(list(self._workspace().online_deployments.list(endpoint_name=request.endpoint_name)))
            if count >= MAX_DEPLOYMENTS_PER_ENDPOINT:
                raise PlatformError(
                    f"endpoint {request.endpoint_name} has {count} deployments; Azure ML allows "
                    f"{MAX_DEPLOYMENTS_PER_ENDPOINT} per endpoint",
                    "QuotaExceeded",
                )
        self._begin_deployment(request, endpoint)

    def _begin_endpoint(self, request: DeployRequest) -> None:
        tags = {**request.tags, TAG_CREATED_AT: self._clock().isoformat(timespec="seconds")}
        endpoint = ManagedOnlineEndpoint(
            name=request.endpoint_name, description=request.description, auth_mode="key", tags=tags
        )
        with azure_call(f"creating endpoint {request.endpoint_name}"):
            poller = self._workspace().online_endpoints.begin_create_or_update(endpoint)
        self._pollers[("endpoint", request.endpoint_name)] = poller
        log.info("endpoint %s: creation started", request.endpoint_name)

    def _begin_deployment(self, request: DeployRequest, endpoint: Any) -> None:
        deployment = ManagedOnlineDeployment(
            name=request.deployment_name,
            endpoint_name=request.endpoint_name,
            model=request.model.id,
            instance_type=request.instance_type,
            instance_count=request.instance_count,
            liveness_probe=ProbeSettings(initial_delay=request.liveness_initial_delay_s),
            request_settings=OnlineRequestSettings(
                request_timeout_ms=request.request_timeout_ms,
                max_concurrent_requests_per_instance=request.max_concurrent_requests,
            ),
            tags=dict(request.tags),
        )
        workspace = self._workspace()
        try:
            poller = workspace.online_deployments.begin_create_or_update(deployment)
        except HttpResponseError as exc:
            if is_retryable(exc):
                raise translate(exc, f"creating deployment {request.deployment_name}") from None
            key = _deploy_error_key(request.deployment_name, request.join_endpoint)
            self._record_failure(endpoint, error_code(exc) or "DeploymentFailed", short(str(exc)), key)
            return
        except AzureError as exc:
            raise translate(exc, f"creating deployment {request.deployment_name}") from None
        self._pollers[("deployment", request.endpoint_name, request.deployment_name)] = poller
        log.info("deployment %s/%s: creation started", request.endpoint_name, request.deployment_name)

    def _record_failure(self, endpoint: Any, code: str, message: str, key: str = TAG_DEPLOY_ERROR) -> None:
        """Keep a refused start on the endpoint itself, where the next look (any worker) finds it."""
        log.warning("endpoint %s: deployment refused (%s): %s", endpoint.name, code, message)
        endpoint.tags = {**resource_tags(endpoint), key: code, _message_key(key): message[:256]}
        with azure_call(f"recording the deployment failure on endpoint {endpoint.name}"):
            self._workspace().online_endpoints.begin_create_or_update(endpoint)

    def get_deployment(self, endpoint_name: str, deployment_name: str) -> DeploymentInfo:
        endpoint = self._endpoints.managed_endpoint(endpoint_name)
        if endpoint is None:
            return DeploymentInfo(endpoint_name, deployment_name, DeploymentState.MISSING)
        tags = resource_tags(endpoint)
        uri = getattr(endpoint, "scoring_uri", None)

        def info(state: DeploymentState, code: str | None = None, message: str | None = None) -> DeploymentInfo:
            if state == DeploymentState.FAILED:
                message = with_remedy(code, message)
            return DeploymentInfo(endpoint_name, deployment_name, state, code, message, uri)

        for key in (_deploy_error_key(deployment_name, True), TAG_DEPLOY_ERROR):
            if key in tags:
                return info(DeploymentState.FAILED, tags[key], tags.get(_message_key(key)))
        state = resource_state(endpoint)
        if state in {"failed", "canceled"}:
            code, message = self._poller_error(("endpoint", endpoint_name))
            default = "OperationCanceled" if state == "canceled" else "EndpointFailed"
            return info(DeploymentState.FAILED, code or default, message or f"endpoint {endpoint_name} is {state}")
        if state == "deleting":
            return info(DeploymentState.DELETING)
        if state == "creating":
            return info(DeploymentState.CREATING)

        deployment = self._endpoints.deployment(endpoint_name, deployment_name)
        if deployment is None:
            return info(DeploymentState.MISSING, message=f"endpoint {endpoint_name} is ready; deployment not started")
        dep_state = resource_state(deployment)
        mapped = DEPLOYMENT_STATES.get(dep_state, DeploymentState.CREATING)
        if mapped != DeploymentState.FAILED:
            return info(mapped)
        code, message = self._poller_error(("deployment", endpoint_name, deployment_name))
        default = "OperationCanceled" if dep_state == "canceled" else "DeploymentFailed"
        return info(
            DeploymentState.FAILED,
            code or default,
            message or f"deployment {deployment_name} is {dep_state}; its logs are in Azure ML studio",
        )
