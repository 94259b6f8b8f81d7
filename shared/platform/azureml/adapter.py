"""``AzureMLPlatform``: the platform port on Azure ML, doing what the seed notebook does, step by step.

- foundation model: ``registry.models.get(name, label="latest" | version=...)`` with its tags;
- compute: the seed's checks (``compute.py``), quota and capacity at submit (``quota.py``); data: datastore
  URIs, data assets or https URLs;
- job: the ``chat_completion_pipeline`` component in the seed's ``@pipeline``, named after the run id, so a
  retried submit finds its job (``jobs.py``, ``pipeline.py``);
- model: registered from ``azureml://jobs/<job>/outputs/trained_model`` as an MLflow model, version derived
  from the run id (``model_version``), so a retried registration finds its version (``models.py``);
- endpoints: started, never awaited (``deployments.py``), read, routed and deleted (``endpoints.py``);
  activity from Azure Monitor (``monitor.py``).
Every create checks the ``autopilot_run_id`` tag of what it finds under its name and never adopts a
foreign resource. ``AzureMLPlatform`` is the one class that implements the port: it builds those parts from
the same clients and hands each call to its part.

``offline=OfflineSources(component_spec, model_tags)`` replaces the registry lookups with files, and with
both given no workspace is touched: that is how ``autopilot plan`` previews a job with no Azure access.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.exceptions import FieldIssue, NotFoundError, RejectedError
from shared.naming import workspace_scope
from shared.platform.azureml.clients import AzureClients
from shared.platform.azureml.compute import check_finetune_compute, check_inference_sku
from shared.platform.azureml.deployments import Deployments
from shared.platform.azureml.endpoints import Endpoints
from shared.platform.azureml.errors import azure_call
from shared.platform.azureml.jobs import Jobs
from shared.platform.azureml.models import MAX_MODEL_VERSION, Models, model_version, system_metadata
from shared.platform.azureml.monitor import (
    MetricsQuery,
    endpoint_resource_id,
    query_activity,
    query_deployment_metrics,
)
from shared.platform.azureml.offline import OfflineSources, load_model, load_model_spec
from shared.platform.azureml.pipeline import BuiltJob
from shared.platform.azureml.quota import check_capacity
from shared.platform.azureml.studio import endpoint_url, job_url
from shared.platform.port import (
    CapacityCheck,
    CapacityRequest,
    ComputeInfo,
    ComputeRequest,
    DeploymentInfo,
    DeploymentMetrics,
    DeploymentSummary,
    DeployRequest,
    EndpointActivity,
    EndpointInfo,
    FoundationModel,
    JobInfo,
    JobRequest,
    MLPlatform,
    ModelRef,
    RegisterRequest,
)
from shared.settings import Settings

# ``model_version`` and its bound are the models part's; they are kept importable from here, where callers
# and the docs have always found them.
__all__ = ["MAX_MODEL_VERSION", "AzureMLPlatform", "model_version"]

log = logging.getLogger(__name__)

_REMOTE_DATA = re.compile(r"^(azureml://|azureml:[A-Za-z0-9_.-]+(:|@)|https://|abfss://|wasbs://)")


class AzureMLPlatform:
    """The platform port on an Azure ML workspace and the ``azureml`` registry."""

    name = "azureml"
    # The fine-tune step logs eval_loss to the workspace's MLflow tracking; a finished job's metrics are read
    # from there (training_metrics.py): eval_loss_after is its last evaluation.
    reports_eval_metrics = True
    # Azure Monitor's platform metrics (RequestsPerMinute) arrive with an ingestion delay it gives no bound for;
    # a few minutes is what is seen. 3 minutes: a request just before an idle deadline is counted.
    activity_delay = timedelta(minutes=3)

    def __init__(
        self,
        settings: Settings,
        *,
        clients: AzureClients | None = None,
        offline: OfflineSources | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients or AzureClients(settings)
        self.offline = offline or OfflineSources()
        self._clock = clock or (lambda: datetime.now(UTC))
        # The parts share these clients, whose workspace client is built on first use; the clock is read
        # through the platform when called, as a test may set ``_clock`` after construction.
        self._jobs = Jobs(settings, self.clients, self.offline)
        self._models = Models(self.clients)
        self._endpoints = Endpoints(lambda: self.clients.workspace)
        self._deployments = Deployments(self._endpoints, lambda: self.clients.workspace, lambda: self._clock())

    @property
    def name_scope(self) -> str:
        """What makes derived names unique beyond the run: the workspace (endpoint names are per region)."""
        s = self.settings
        return workspace_scope(s.azureml_subscription_id, s.azureml_resource_group, s.azureml_workspace_name)

    # -- model, compute, data ---------------------------------------------------------------------------------
    def get_foundation_model(self, name: str, version: str, registry: str) -> FoundationModel:
        if self.offline.model_spec is not None:
            return load_model_spec(self.offline.model_spec, name, version, registry)
        if self.offline.model_tags is not None:
            return load_model(self.offline.model_tags, name, version, registry)
        client = self.clients.registry(registry)
        try:
            with azure_call(f"reading model {name} from registry {registry}"):
                model: Any = (
                    client.models.get(name, label="latest")
                    if version == "latest"
                    else client.models.get(name, version=version)
                )
        except NotFoundError:
            path = "model.name" if version == "latest" else "model.version"
            raise RejectedError(
                [FieldIssue(path, f"no model {name} version {version} in registry {registry} (see the model catalog)")]
            ) from None
        tags = {str(k): str(v) for k, v in (model.tags or {}).items()}
        return FoundationModel(
            name=str(model.name),
            version=str(model.version),
            id=str(model.id),
            tags=tags,
            system_metadata=system_metadata(model),
        )

    def check_compute(self, request: ComputeRequest, allow_list: list[str] | None) -> ComputeInfo:
        workspace = None if self.offline.no_workspace else self.clients.workspace
        return check_finetune_compute(request, allow_list, workspace, "fine-tune allow list")

    def check_inference_compute(self, instance_type: str, allow_list: list[str] | None) -> str:
        return check_inference_sku(instance_type, allow_list, "inference allow list")

    def check_capacity(self, request: CapacityRequest) -> list[CapacityCheck]:
        workspace = None if self.offline.no_workspace else self.clients.workspace
        return check_capacity(workspace, self.settings.azureml_workspace_name, request)

    def check_data(self, paths: dict[str, str]) -> dict[str, str]:
        """Data must be readable by the job in Azure: datastore URIs, data assets or https URLs, as given."""
        issues = [
            FieldIssue(
                f"data.{split}",
                "on Azure ML give a datastore URI (azureml://datastores/<store>/paths/<file>), a data asset "
                f"(azureml:<name>:<version>) or an https URL; {value[:80]!r} is a local path the job cannot read",
            )
            for split, value in paths.items()
            if not _REMOTE_DATA.match(value)
        ]
        if "train" not in paths:
            issues.append(FieldIssue("data.train", "required"))
        if issues:
            raise RejectedError(issues)
        return dict(paths)

    # -- the job (jobs.py) ------------------------------------------------------------------------------------
    def component(self, name: str, version: str) -> Any:
        """The pipeline component: the offline spec, or the registry's (label latest or a pinned version)."""
        return self._jobs.component(name, version)

    def build_pipeline_job(self, request: JobRequest) -> BuiltJob:
        """The PipelineJob ``submit_job`` sends (also what ``autopilot plan`` prints)."""
        return self._jobs.build_pipeline_job(request)

    def submit_job(self, request: JobRequest) -> JobInfo:
        return self._jobs.submit_job(request)

    def get_job(self, name: str) -> JobInfo:
        return self._jobs.get_job(name)

    def cancel_job(self, name: str) -> None:
        self._jobs.cancel_job(name)

    def list_jobs(self, limit: int = 500) -> list[JobInfo]:
        return self._jobs.list_jobs(limit)

    def links(self, job_name: str | None, endpoint_name: str | None) -> dict[str, str]:
        """The job's and the endpoint's pages in Azure ML studio (studio.py)."""
        s = self.settings
        scope = (s.azureml_subscription_id, s.azureml_resource_group, s.azureml_workspace_name)
        found = {}
        if job_name:
            found["job"] = job_url(job_name, *scope)
        if endpoint_name:
            found["endpoint"] = endpoint_url(endpoint_name, *scope)
        return found

    # -- the model (models.py) --------------------------------------------------------------------------------
    def register_model(self, request: RegisterRequest) -> ModelRef:
        return self._models.register_model(request)

    def get_model(self, name: str, version: str) -> ModelRef:
        return self._models.get_model(name, version)

    def list_models(self, limit: int = 500) -> list[ModelRef]:
        return self._models.list_models(limit)

    def set_model_alias(self, name: str, alias: str, version: str) -> None:
        self._models.set_model_alias(name, alias, version)

    def delete_model_alias(self, name: str, alias: str) -> None:
        self._models.delete_model_alias(name, alias)

    def model_aliases(self, name: str) -> dict[str, str]:
        return self._models.model_aliases(name)

    # -- endpoints (deployments.py, endpoints.py) -------------------------------------------------------------
    def begin_deploy(self, request: DeployRequest) -> None:
        self._deployments.begin_deploy(request)

    def get_deployment(self, endpoint_name: str, deployment_name: str) -> DeploymentInfo:
        return self._deployments.get_deployment(endpoint_name, deployment_name)

    def set_traffic(self, endpoint_name: str, traffic: dict[str, int]) -> None:
        self._endpoints.set_traffic(endpoint_name, traffic)

    def invoke(self, endpoint_name: str, deployment_name: str | None, payload: dict[str, Any]) -> Any:
        return self._endpoints.invoke(endpoint_name, deployment_name, payload)

    def list_endpoints(self) -> list[EndpointInfo]:
        return self._endpoints.list_endpoints()

    def begin_delete_endpoint(self, endpoint_name: str) -> None:
        self._endpoints.begin_delete_endpoint(endpoint_name)

    def list_deployments(self, endpoint_name: str) -> list[DeploymentSummary]:
        return self._endpoints.list_deployments(endpoint_name)

    def begin_delete_deployment(self, endpoint_name: str, deployment_name: str) -> None:
        self._endpoints.begin_delete_deployment(endpoint_name, deployment_name)

    def deployment_metrics(self, endpoint_name: str, since: datetime) -> dict[str, DeploymentMetrics]:
        """Azure Monitor's RequestsPerMinute of the endpoint split by deployment and status code (monitor.py)."""
        endpoint = self._endpoints.endpoint(endpoint_name)
        location = getattr(endpoint, "location", None) or self._workspace_location()
        s = self.settings
        rid = endpoint_resource_id(
            s.azureml_subscription_id, s.azureml_resource_group, s.azureml_workspace_name, endpoint_name
        )
        return query_deployment_metrics(self.clients.metrics(str(location)), rid, since, self._clock())

    def endpoint_activity(self, endpoint_name: str, since: datetime) -> EndpointActivity:
        return self.endpoints_activity([endpoint_name], since)[endpoint_name]

    def endpoints_activity(self, endpoint_names: Sequence[str], since: datetime) -> dict[str, EndpointActivity]:
        # Endpoints are created in the workspace's region, so one regional client answers for all of them,
        # 50 resource ids per metrics:getBatch call (monitor.py); one endpoint read tells the region.
        if not endpoint_names:
            return {}
        location = getattr(self._endpoints.endpoint(endpoint_names[0]), "location", None) or self._workspace_location()
        s = self.settings
        scope = (s.azureml_subscription_id, s.azureml_resource_group, s.azureml_workspace_name)
        ids = {name: endpoint_resource_id(*scope, name) for name in endpoint_names}
        query = MetricsQuery(resource_ids=tuple(ids.values()), since=since, until=self._clock())
        found = query_activity(self.clients.metrics(str(location)), query)
        return {name: found[rid] for name, rid in ids.items()}

    def _workspace_location(self) -> str:
        name = self.settings.azureml_workspace_name
        with azure_call(f"reading workspace {name}"):
            return str(self.clients.workspace.workspaces.get(name).location)


if TYPE_CHECKING:  # mypy proves the adapter keeps the port's shape

    def _is_a_platform(settings: Settings) -> MLPlatform:
        return AzureMLPlatform(settings)
