"""Test doubles for the Azure ML SDK: autospecced ``MLClient``s, and a workspace that keeps state.

``spec_ml_client()`` is ``create_autospec(MLClient, instance=True)`` with the operations properties
(``jobs``, ``models``, ``online_endpoints``, ...) replaced by an autospec of the class their annotation names:
``create_autospec`` alone does not follow properties, so a misspelt method or keyword on ``client.jobs``
would pass silently. ``FakeWorkspace`` wires side effects onto such a client that behave like a workspace
(jobs, models, computes, endpoints, deployments held in dicts; the service's errors raised as azure-core
raises them), so tests assert on what exists afterwards.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import NonCallableMock, create_autospec

from azure.ai.ml import MLClient
from azure.ai.ml.entities import AmlCompute, ManagedOnlineDeployment, ManagedOnlineEndpoint, Model, Usage, UsageName
from azure.ai.ml.entities._compute._vm_size import VmSize
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg-autopilot"
WORKSPACE = "ws-autopilot"
WORKSPACE_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
    f"Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
)


def operations_classes() -> dict[str, type]:
    """MLClient's operations properties and the class each returns, from the SDK's own annotations."""
    found = {}
    for name, attr in vars(MLClient).items():
        if isinstance(attr, property) and attr.fget is not None:
            returned = inspect.signature(attr.fget).return_annotation
            if inspect.isclass(returned) and returned.__name__.endswith("Operations"):
                found[name] = returned
    return found


# The operations the adapter uses get a full autospec (about 50 ms each); the others refuse every attribute,
# so a call the adapter should not make fails as loudly as a misspelt one.
ADAPTER_OPERATIONS = frozenset(
    {"jobs", "models", "components", "compute", "online_endpoints", "online_deployments", "workspaces"}
)


def spec_ml_client() -> Any:
    client = create_autospec(MLClient, instance=True)
    for name, cls in operations_classes().items():
        ops = create_autospec(cls, instance=True) if name in ADAPTER_OPERATIONS else NonCallableMock(spec=[])
        setattr(client, name, ops)
    return client


def not_found(what: str) -> ResourceNotFoundError:
    return ResourceNotFoundError(message=f"(ResourceNotFound) {what} was not found")


class FakePoller:
    """An LRO poller that is already finished, with a result or an error."""

    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self._result = result
        self._error = error

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> Any:
        if self._error is not None:
            raise self._error
        return self._result


@dataclass
class FakeWorkspace:
    """A workspace's state behind an autospecced MLClient."""

    computes: dict[str, AmlCompute] = field(default_factory=dict)
    sizes: list[VmSize] = field(default_factory=list)
    # compute.list_usage(): vCPUs in use and limits, shaped as the service reports them (family_usage()).
    usages: list[Usage] = field(default_factory=list)
    jobs: dict[str, Any] = field(default_factory=dict)
    models: dict[tuple[str, str], Any] = field(default_factory=dict)
    endpoints: dict[str, Any] = field(default_factory=dict)
    deployments: dict[tuple[str, str], Any] = field(default_factory=dict)
    # Raised by the next deployment create (e.g. a quota refusal), as the service answers at once.
    deployment_error: Exception | None = None
    invoked: list[dict[str, Any]] = field(default_factory=list)
    answer: str = '[{"0": "Pack layers, water and a map."}]'
    client: Any = None

    def __post_init__(self) -> None:
        c = spec_ml_client()
        c.compute.get.side_effect = self._compute_get
        c.compute.list_sizes.side_effect = lambda: list(self.sizes)
        c.compute.list_usage.side_effect = lambda: list(self.usages)
        c.jobs.create_or_update.side_effect = self._job_create
        c.jobs.get.side_effect = self._job_get
        c.jobs.list.side_effect = lambda **_: list(reversed(self.jobs.values()))  # newest first, like the service
        c.models.list.side_effect = self._model_list
        c.models.get.side_effect = self._model_get
        c.models.create_or_update.side_effect = self._model_create
        c.online_endpoints.get.side_effect = self._endpoint_get
        c.online_endpoints.list.side_effect = lambda: list(self.endpoints.values())
        c.online_endpoints.begin_create_or_update.side_effect = self._endpoint_put
        c.online_endpoints.begin_delete.side_effect = self._endpoint_delete
        c.online_endpoints.invoke.side_effect = self._invoke
        c.online_deployments.get.side_effect = self._deployment_get
        c.online_deployments.begin_create_or_update.side_effect = self._deployment_put
        c.online_deployments.list.side_effect = self._deployment_list
        c.online_deployments.begin_delete.side_effect = self._deployment_delete
        self.client = c

    # compute
    def _compute_get(self, name: str) -> AmlCompute:
        if name not in self.computes:
            raise not_found(f"compute {name}")
        return self.computes[name]

    # jobs: the service refuses a second job under an existing name
    def _job_create(self, job: Any, *, experiment_name: str | None = None) -> Any:
        if job.name in self.jobs:
            raise ResourceExistsError(message=f"(UserError) A job with name {job.name} already exists")
        job.experiment_name = experiment_name or job.experiment_name
        self.jobs[job.name] = job
        return job

    def _job_get(self, name: str) -> Any:
        if name not in self.jobs:
            raise not_found(f"job {name}")
        return self.jobs[name]

    # models
    def _model_get(self, name: str, version: str | None = None, label: str | None = None) -> Model:
        if (name, str(version)) not in self.models:
            raise not_found(f"model {name}:{version}")
        return self.models[(name, str(version))]

    def _model_list(self, name: str | None = None, stage: str | None = None, **_: Any) -> list[Model]:
        """Without a name: one entry per model name (the containers, no tags); with one: its versions."""
        if name is None:
            names = dict.fromkeys(n for n, _ in self.models)
            return [Model(name=n, path="x") for n in names]
        return [m for (n, _), m in self.models.items() if n == name]

    def _model_create(self, model: Any) -> Model:
        key = (model.name, str(model.version))
        if key in self.models:
            existing = self.models[key]
            if (existing.path, existing.type) != (model.path, model.type):
                raise ResourceExistsError(message="(UserError) model version already exists")
            # The same asset again: its tags and description are what an update may change.
            existing.tags, existing.description = dict(model.tags or {}), model.description
            return existing
        stored = Model(
            name=model.name,
            version=model.version,
            path=model.path,
            type=model.type,
            description=model.description,
            tags=dict(model.tags or {}),
            id=f"{WORKSPACE_ID}/models/{model.name}/versions/{model.version}",
        )
        self.models[key] = stored
        return stored

    # endpoints: created "Creating"; tests move the state as the service would
    def _endpoint_get(self, name: str) -> ManagedOnlineEndpoint:
        if name not in self.endpoints:
            raise not_found(f"endpoint {name}")
        return self.endpoints[name]

    def _endpoint_put(self, endpoint: Any) -> FakePoller:
        previous = self.endpoints.get(endpoint.name)
        state = previous.provisioning_state if previous else "Creating"
        stored = ManagedOnlineEndpoint(
            name=endpoint.name,
            description=endpoint.description,
            auth_mode=endpoint.auth_mode,
            tags=dict(endpoint.tags or {}),
            traffic=dict(endpoint.traffic or {}),
            provisioning_state=state,
            location="eastus",
            id=f"{WORKSPACE_ID}/onlineEndpoints/{endpoint.name}",
            scoring_uri=f"https://{endpoint.name}.eastus.inference.ml.azure.com/score",
        )
        self.endpoints[endpoint.name] = stored
        return FakePoller(stored)

    def _endpoint_delete(self, name: str | None = None) -> FakePoller:
        assert name is not None
        self.endpoints.pop(name, None)
        for key in [k for k in self.deployments if k[0] == name]:
            del self.deployments[key]
        return FakePoller()

    def _invoke(self, endpoint_name: str, *, request_file: str, deployment_name: str | None = None) -> str:
        with open(request_file, encoding="utf-8") as handle:
            payload = json.load(handle)
        self.invoked.append(
            {"endpoint": endpoint_name, "deployment": deployment_name, "file": request_file, "payload": payload}
        )
        return self.answer

    def set_endpoint_state(self, name: str, state: str) -> None:
        self.endpoints[name]._provisioning_state = state

    # deployments
    def _deployment_get(self, name: str, endpoint_name: str) -> ManagedOnlineDeployment:
        if (endpoint_name, name) not in self.deployments:
            raise not_found(f"deployment {endpoint_name}/{name}")
        return self.deployments[(endpoint_name, name)]

    def _deployment_put(self, deployment: Any) -> FakePoller:
        if self.deployment_error is not None:
            raise self.deployment_error
        endpoint = self.endpoints.get(deployment.endpoint_name)
        if endpoint is None or endpoint.provisioning_state != "Succeeded":
            raise HttpResponseError(message="(BadArgument) the endpoint is not ready")
        deployment._provisioning_state = "Creating"
        self.deployments[(deployment.endpoint_name, deployment.name)] = deployment
        return FakePoller(deployment)

    def _deployment_list(self, endpoint_name: str, *, local: bool = False) -> list[Any]:
        if endpoint_name not in self.endpoints:
            raise not_found(f"endpoint {endpoint_name}")
        return [d for (e, _), d in self.deployments.items() if e == endpoint_name]

    def _deployment_delete(self, name: str, endpoint_name: str, *, local: bool = False) -> FakePoller:
        # As the service: a deployment that still takes traffic cannot be deleted.
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is not None and int((endpoint.traffic or {}).get(name) or 0) > 0:
            error = HttpResponseError(message=f"(BadRequest) deployment {name} has traffic")
            error.status_code = 400
            raise error
        self.deployments.pop((endpoint_name, name), None)
        return FakePoller()

    def set_deployment_state(self, endpoint: str, name: str, state: str) -> None:
        self.deployments[(endpoint, name)]._provisioning_state = state


def quota_error() -> HttpResponseError:
    error = HttpResponseError(
        message="(OutOfQuota) Not enough quota available for Standard_NC24ads_A100_v4 in this subscription."
    )
    error.status_code = 400
    return error


def family_usage(label: str, used: int, limit: int, workspace: str | None = None, compute: str | None = None) -> Usage:
    """A ``Usage`` as ``compute.list_usage()`` returns it, named and typed like the service's own entries
    (azure-rest-api-specs machinelearningservices 2024-04-01 examples/Usage/list.json): ``label`` is
    ``Standard NCADSA100v4 Family Cluster Dedicated vCPUs`` or ``Total Cluster Dedicated Regional vCPUs``;
    ``workspace``/``compute`` give the per-workspace and per-cluster entries the service lists besides."""
    key = label.replace(" ", "_")
    scope = f"/subscriptions/{SUBSCRIPTION}"
    kind = "Microsoft.MachineLearningServices/vmFamily/usages"
    if workspace:
        scope += f"/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/{workspace}"
        kind = "Microsoft.MachineLearningServices/workspaces/usages"
        if compute:
            scope += f"/computes/{compute}"
            kind = "Microsoft.MachineLearningServices/workspaces/computes/usages"
    return Usage(
        id=f"{scope}/usages/{key}",
        type=kind,
        unit="Count",
        current_value=used,
        limit=limit,
        name=UsageName(value=label, localized_value=label),
    )
