"""Online endpoints and deployments: reading and listing them, traffic, deleting and invoking.

Deploying (the endpoint, then the deployment, started and never awaited) is ``deployments.py``; both read
through ``Endpoints``, which never touches an endpoint that is not the app's (``autopilot_managed`` tag).
Deletes are started with ``begin_*`` and never awaited.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.ai.ml.exceptions import MlException
from azure.core.exceptions import AzureError

from shared.exceptions import NotFoundError, NotManagedError, PlatformError
from shared.naming import TAG_RUN_ID, is_managed
from shared.platform.azureml.errors import azure_call, translate, unclassified_answer
from shared.platform.port import DeploymentState, DeploymentSummary, EndpointInfo

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

log = logging.getLogger(__name__)

# Underscores, as every tag the app writes (shared/naming.py: Event Grid filter keys cannot escape a '.').
TAG_CREATED_AT = "autopilot_created_at"

DEPLOYMENT_STATES = {
    "creating": DeploymentState.CREATING,
    "updating": DeploymentState.UPDATING,
    "scaling": DeploymentState.UPDATING,
    "succeeded": DeploymentState.SUCCEEDED,
    "failed": DeploymentState.FAILED,
    "canceled": DeploymentState.FAILED,
    "deleting": DeploymentState.DELETING,
}


def provisioning_state(resource: Any) -> str | None:
    # The SDK hands back its str enums (EndpointProvisioningState.SUCCEEDED), whose str() is the member's
    # name, not "Succeeded": read the value (a replay of the SDK's recordings showed the deployment never began).
    state = getattr(resource, "provisioning_state", None)
    return None if state is None else str(getattr(state, "value", state))


def resource_state(resource: Any) -> str:
    return (provisioning_state(resource) or "").lower()


def resource_tags(resource: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (getattr(resource, "tags", None) or {}).items()}


def created_at(endpoint: Any) -> datetime | None:
    context = getattr(endpoint, "creation_context", None)
    when = getattr(context, "created_at", None)
    if isinstance(when, datetime):
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    text = resource_tags(endpoint).get(TAG_CREATED_AT)
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


class Endpoints:
    """Endpoint and deployment calls on one workspace, except starting them (``deployments.Deployments``)."""

    def __init__(self, workspace: Callable[[], MLClient]) -> None:
        self._workspace = workspace

    # -- reading and listing ---------------------------------------------------------------------------------
    def _endpoint(self, name: str) -> Any | None:
        try:
            with azure_call(f"reading endpoint {name}"):
                return self._workspace().online_endpoints.get(name)
        except NotFoundError:
            return None

    def deployment(self, endpoint: str, name: str) -> Any | None:
        try:
            with azure_call(f"reading deployment {endpoint}/{name}"):
                return self._workspace().online_deployments.get(name=name, endpoint_name=endpoint)
        except NotFoundError:
            return None

    def managed_endpoint(self, name: str, run_id: str | None = None) -> Any | None:
        endpoint = self._endpoint(name)
        if endpoint is None:
            return None
        tags = resource_tags(endpoint)
        if not is_managed(tags) or (run_id is not None and tags.get(TAG_RUN_ID) != run_id):
            raise NotManagedError(
                f"endpoint {name} exists but was not created by this app for this run; it is left alone "
                "(choose another deployment.endpoint_name)",
                "NotManaged",
            )
        return endpoint

    def endpoint(self, endpoint_name: str) -> Any:
        """The managed endpoint (for its resource id and region); ``NotFoundError`` if missing."""
        endpoint = self.managed_endpoint(endpoint_name)
        if endpoint is None:
            raise NotFoundError(f"endpoint {endpoint_name} does not exist", "ResourceNotFound")
        return endpoint

    def list_endpoints(self) -> list[EndpointInfo]:
        with azure_call("listing online endpoints"):
            endpoints = list(self._workspace().online_endpoints.list())
        found = []
        for endpoint in endpoints:
            tags = resource_tags(endpoint)
            if not is_managed(tags):
                continue
            state = resource_state(endpoint)
            found.append(
                EndpointInfo(
                    name=str(endpoint.name),
                    tags=tags,
                    created_at=created_at(endpoint),
                    scoring_uri=getattr(endpoint, "scoring_uri", None),
                    state=provisioning_state(endpoint),
                    healthy=False if state == "failed" else None,
                )
            )
        return found

    def list_deployments(self, endpoint_name: str) -> list[DeploymentSummary]:
        endpoint = self.managed_endpoint(endpoint_name)
        if endpoint is None:
            raise NotFoundError(f"endpoint {endpoint_name} does not exist", "ResourceNotFound")
        traffic = {str(k): int(v) for k, v in (getattr(endpoint, "traffic", None) or {}).items()}
        with azure_call(f"listing the deployments of {endpoint_name}"):
            deployments = list(self._workspace().online_deployments.list(endpoint_name=endpoint_name))
        return [
            DeploymentSummary(
                name=str(d.name),
                run_id=resource_tags(d).get(TAG_RUN_ID),
                state=DEPLOYMENT_STATES.get(resource_state(d), DeploymentState.CREATING),
                traffic=traffic.get(str(d.name), 0),
            )
            for d in deployments
        ]

    # -- using and removing ----------------------------------------------------------------------------------
    def set_traffic(self, endpoint_name: str, traffic: dict[str, int]) -> None:
        endpoint = self.managed_endpoint(endpoint_name)
        if endpoint is None:
            raise NotFoundError(f"endpoint {endpoint_name} does not exist", "ResourceNotFound")
        if dict(getattr(endpoint, "traffic", None) or {}) == traffic:
            return
        endpoint.traffic = dict(traffic)
        # Not awaited: the smoke test names its deployment, so it does not depend on the routing yet.
        with azure_call(f"setting traffic on endpoint {endpoint_name}"):
            self._workspace().online_endpoints.begin_create_or_update(endpoint)

    def invoke(self, endpoint_name: str, deployment_name: str | None, payload: dict[str, Any]) -> Any:
        handle, path = tempfile.mkstemp(prefix="autopilot-score-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(payload, file)
            what = f"invoking endpoint {endpoint_name}"
            try:
                answer = self._workspace().online_endpoints.invoke(
                    endpoint_name=endpoint_name, request_file=path, deployment_name=deployment_name
                )
            except AzureError as exc:
                # The SDK reads an error answer without a JSON body as a bare MlException, with no status.
                unclassified = type(exc) is MlException
                raise (unclassified_answer(exc, what) if unclassified else translate(exc, what)) from None
        finally:
            os.unlink(path)
        if isinstance(answer, bytes):
            answer = answer.decode("utf-8", "replace")
        try:
            return json.loads(answer) if isinstance(answer, str) else answer
        except json.JSONDecodeError:
            return answer

    def begin_delete_deployment(self, endpoint_name: str, deployment_name: str) -> None:
        endpoint = self.managed_endpoint(endpoint_name)
        if endpoint is None:
            return
        if int((getattr(endpoint, "traffic", None) or {}).get(deployment_name) or 0) > 0:
            raise PlatformError(
                f"deployment {deployment_name} of endpoint {endpoint_name} carries traffic; it is not deleted",
                "DeploymentHasTraffic",
            )
        deployment = self.deployment(endpoint_name, deployment_name)
        if deployment is None or resource_state(deployment) == "deleting":
            return
        with azure_call(f"deleting deployment {endpoint_name}/{deployment_name}"):
            self._workspace().online_deployments.begin_delete(name=deployment_name, endpoint_name=endpoint_name)
        log.info("deployment %s/%s: deletion started", endpoint_name, deployment_name)

    def begin_delete_endpoint(self, endpoint_name: str) -> None:
        endpoint = self.managed_endpoint(endpoint_name)
        if endpoint is None or resource_state(endpoint) == "deleting":
            return
        with azure_call(f"deleting endpoint {endpoint_name}"):
            self._workspace().online_endpoints.begin_delete(name=endpoint_name)
        log.info("endpoint %s: deletion started", endpoint_name)
