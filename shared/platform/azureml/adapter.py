"""``AzureMLPlatform``: the platform port on Azure ML, doing what the seed notebook does, step by step.

- foundation model: ``registry.models.get(name, label="latest" | version=...)`` with its tags;
- compute: the seed's checks (``compute.py``), quota and capacity at submit (``quota.py``); data: datastore
  URIs, data assets or https URLs;
- job: the ``chat_completion_pipeline`` component in the seed's ``@pipeline``, named after the run id, so a
  retried submit finds its job (``pipeline.py``);
- model: registered from ``azureml://jobs/<job>/outputs/trained_model`` as an MLflow model, version derived
  from the run id (``model_version``), so a retried registration finds its version;
- endpoints: started, never awaited (``endpoints.py``); activity from Azure Monitor (``monitor.py``).
Every create checks the ``autopilot_run_id`` tag of what it finds under its name and never adopts a
foreign resource.

``offline=OfflineSources(component_spec, model_tags)`` replaces the registry lookups with files, and with
both given no workspace is touched: that is how ``autopilot plan`` previews a job with no Azure access.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import Model
from azure.ai.ml.exceptions import ValidationException
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError

from shared.exceptions import (
    FieldIssue,
    NotFoundError,
    NotManagedError,
    PlatformError,
    RejectedError,
    TransientPlatformError,
)
from shared.naming import ALIAS_TAG_PREFIX, TAG_RUN_ID, alias_tag, is_managed, run_hash, workspace_scope
from shared.platform.azureml.clients import AzureClients
from shared.platform.azureml.compute import check_finetune_compute, check_inference_sku
from shared.platform.azureml.endpoints import Endpoints
from shared.platform.azureml.errors import azure_call, short, translate
from shared.platform.azureml.monitor import (
    MetricsQuery,
    endpoint_resource_id,
    query_activity,
    query_deployment_metrics,
)
from shared.platform.azureml.offline import OfflineSources, load_component_spec, load_model, load_model_spec
from shared.platform.azureml.pipeline import OUTPUT_NAME, BuiltJob, build_pipeline_job
from shared.platform.azureml.quota import check_capacity
from shared.platform.azureml.studio import endpoint_url, job_url
from shared.platform.azureml.training_metrics import TrainingMetrics, read_training_metrics
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
    JobStatus,
    MLPlatform,
    ModelRef,
    RegisterRequest,
)
from shared.settings import Settings

log = logging.getLogger(__name__)

# Jobs read per app-tagged job wanted, at most: the jobs listing has no tag filter, and a busy workspace holds
# many jobs that are not the app's.
SCAN_FACTOR = 4
_REMOTE_DATA = re.compile(r"^(azureml://|azureml:[A-Za-z0-9_.-]+(:|@)|https://|abfss://|wasbs://)")


MAX_MODEL_VERSION = 2**31 - 1  # registered model versions are positive 32-bit integers


def model_version(run_id: str) -> str:
    """The registered model's version for a run: derived from the run hash, in 1 .. 2^31-1.

    Azure ML model versions are positive integers (the seed used a timestamp); deriving the version from the
    run makes a retried registration address the version it created. Eight hex digits reach 2^32-1 and can be
    0, so the hash is folded into the valid range.
    """
    suffix = run_hash(run_id)
    if not re.fullmatch(r"[0-9a-f]{8}", suffix):
        suffix = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return str(int(suffix, 16) % MAX_MODEL_VERSION + 1)


def _is_conflict(exc: HttpResponseError) -> bool:
    text = str(getattr(exc, "message", None) or exc).lower()
    return isinstance(exc, ResourceExistsError) or exc.status_code == 409 or "already exist" in text


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
        self._endpoints = Endpoints(lambda: self.clients.workspace, lambda: self._clock())

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
            system_metadata=_system_metadata(model),
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

    # -- the job ----------------------------------------------------------------------------------------------
    def component(self, name: str, version: str) -> Any:
        """The pipeline component: the offline spec, or the registry's (label latest or a pinned version)."""
        if self.offline.component_spec is not None:
            return load_component_spec(self.offline.component_spec)
        registry = self.settings.azureml_registry
        client = self.clients.registry(registry)
        try:
            with azure_call(f"reading component {name} from registry {registry}"):
                if version == "latest":
                    return client.components.get(name=name, label="latest")
                return client.components.get(name=name, version=version)
        except NotFoundError:
            raise RejectedError(
                [FieldIssue("component.version", f"no component {name} version {version} in registry {registry}")]
            ) from None

    def build_pipeline_job(self, request: JobRequest) -> BuiltJob:
        """The PipelineJob ``submit_job`` sends (also what ``autopilot plan`` prints)."""
        return build_pipeline_job(request, self.component(request.component_name, request.component_version))

    def submit_job(self, request: JobRequest) -> JobInfo:
        built = self.build_pipeline_job(request)
        for note in built.notes:
            log.info("run %s: %s", request.name, note)
        workspace = self.clients.workspace
        try:
            job: Any = workspace.jobs.create_or_update(built.job, experiment_name=request.experiment_name)
        except HttpResponseError as exc:
            if not _is_conflict(exc):
                raise translate(exc, f"submitting job {request.name}") from None
            log.info("run %s: job %s already exists; checking it is this run's", request.name, request.name)
            with azure_call(f"reading job {request.name}"):
                job = workspace.jobs.get(request.name)
        except ValidationException as exc:
            # The SDK's own checks of the job refused it: the config produced something the service would refuse.
            raise RejectedError([FieldIssue("job", short(exc.message))]) from None
        except AzureError as exc:
            raise translate(exc, f"submitting job {request.name}") from None
        info = self._job_info(job)
        expected = request.tags.get(TAG_RUN_ID)
        if info.tags.get(TAG_RUN_ID) != expected:
            raise PlatformError(
                f"a job named {request.name} exists in the workspace but belongs to run "
                f"{info.tags.get(TAG_RUN_ID) or '(no autopilot_run_id tag)'}, not {expected}; it is left alone",
                "JobNameTaken",
            )
        log.info("run %s: job %s is %s", request.name, info.name, info.status.value)
        return info

    def get_job(self, name: str) -> JobInfo:
        with azure_call(f"reading job {name}"):
            job = self.clients.workspace.jobs.get(name)
        info = self._job_info(job)
        if info.status != JobStatus.COMPLETED:
            return info
        found = self._training_metrics(info.name)
        return dataclasses.replace(info, metrics=found.metrics, history=found.history)

    def _training_metrics(self, job_name: str) -> TrainingMetrics:
        """A finished job's loss curve and evaluation, from the workspace's MLflow tracking; none (logged) when
        the tracking store cannot be reached for a reason a later look would not change."""
        from mlflow.exceptions import MlflowException

        try:
            client = self.clients.mlflow()
        except TransientPlatformError:
            raise
        except (PlatformError, MlflowException) as exc:
            log.warning("job %s: no training metrics: %s", job_name, exc)
            return TrainingMetrics()
        return read_training_metrics(client, job_name)

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

    def cancel_job(self, name: str) -> None:
        try:
            with azure_call(f"canceling job {name}"):
                self.clients.workspace.jobs.begin_cancel(name)  # the poller is not waited on
        except NotFoundError:
            return

    def list_jobs(self, limit: int = 500) -> list[JobInfo]:
        # Top-level jobs only (the pipeline, not its steps), the service's order (newest first). The listing
        # has no tag filter, so at most ``SCAN_FACTOR * limit`` jobs are read, whatever the workspace holds.
        found: list[JobInfo] = []
        with azure_call("listing jobs"):
            for job in itertools.islice(self.clients.workspace.jobs.list(), SCAN_FACTOR * max(limit, 0)):
                if len(found) >= limit:
                    break
                if is_managed({str(k): str(v) for k, v in (getattr(job, "tags", None) or {}).items()}):
                    found.append(self._job_info(job))
        return found

    def _job_info(self, job: Any) -> JobInfo:
        raw = getattr(job, "status", None)
        # The SDK's status is its str enum (JobStatus.NOT_STARTED), whose str() is the member's name, not the
        # service's "NotStarted": read the value (a replay of the SDK's recordings read every job as Unknown).
        raw = getattr(raw, "value", raw)
        # A job the service has just accepted may not report a status yet: it has not started.
        status = JobStatus.parse(raw) if raw else JobStatus.NOT_STARTED
        url = getattr(job, "studio_url", None)
        error = None
        if status == JobStatus.FAILED:
            error = "the pipeline job failed; the failing step and its logs are in Azure ML studio" + (
                f": {url}" if url else ""
            )
        return JobInfo(
            name=str(job.name),
            status=status,
            tags={str(k): str(v) for k, v in (getattr(job, "tags", None) or {}).items()},
            error=error,
            progress=f"{raw or status.value}" + (f" ({url})" if url else ""),
        )

    # -- the model --------------------------------------------------------------------------------------------
    def register_model(self, request: RegisterRequest) -> ModelRef:
        run_id = request.tags.get(TAG_RUN_ID, request.job_name)
        version = model_version(run_id)
        existing = self._find_model(request.model_name, version)
        if existing is not None:
            return self._own_model(existing, run_id)
        model = Model(
            path=f"azureml://jobs/{request.job_name}/outputs/{OUTPUT_NAME}",
            type=AssetTypes.MLFLOW_MODEL,
            name=request.model_name,
            version=version,
            description=request.description,
            tags=dict(request.tags),
        )
        try:
            with azure_call(f"registering model {request.model_name}:{version}"):
                created = self.clients.workspace.models.create_or_update(model)
        except PlatformError:
            # Another worker may have registered it between the look and the create.
            again = self._find_model(request.model_name, version)
            if again is None:
                raise
            created = again
        log.info("run %s: registered model %s:%s", run_id, request.model_name, version)
        return self._own_model(created, run_id)

    def _find_model(self, name: str, version: str) -> Any | None:
        try:
            with azure_call(f"reading model {name}:{version}"):
                return self.clients.workspace.models.get(name, version=version)
        except NotFoundError:
            return None

    def _own_model(self, model: Any, run_id: str) -> ModelRef:
        ref = _model_ref(model)
        if ref.tags.get(TAG_RUN_ID) != run_id:
            owner = ref.tags.get(TAG_RUN_ID) or "(no autopilot_run_id tag)"
            raise RejectedError(
                [
                    FieldIssue(
                        "registration.model_name",
                        f"model {ref.name} version {ref.version} exists and belongs to {owner}, not run {run_id}; "
                        "choose another model name",
                    )
                ]
            )
        return ref

    def get_model(self, name: str, version: str) -> ModelRef:
        with azure_call(f"reading model {name}:{version}"):
            return _model_ref(self.clients.workspace.models.get(name, version=version))

    def list_models(self, limit: int = 500) -> list[ModelRef]:
        # The workspace lists model names (containers) without their versions' tags, so each name's versions
        # are listed too: one call per name, at most ``limit`` names and ``limit`` app-tagged versions.
        found: list[ModelRef] = []
        models = self.clients.workspace.models
        with azure_call("listing models"):
            names = [str(m.name) for m in itertools.islice(models.list(), max(limit, 0))]
            for name in names:
                for version in models.list(name=name):
                    if len(found) >= limit:
                        return found
                    ref = _model_ref(version)
                    if is_managed(ref.tags):
                        found.append(ref)
        return found

    # -- aliases ----------------------------------------------------------------------------------------------
    # The workspace registry's MLflow interface documents no registered-model aliases (its MLflow support
    # lists tags on model versions, not aliases: learn.microsoft.com/azure/machine-learning/how-to-manage-
    # models-mlflow), so an alias is a tag on the version, ``autopilot_alias_<alias>: "true"``, written with
    # azure-ai-ml (a model version's tags and description are what may change after it is created).
    def set_model_alias(self, name: str, alias: str, version: str) -> None:
        key = alias_tag(alias)
        with azure_call(f"setting alias {alias} of model {name}"):
            target = self.clients.workspace.models.get(name, version=version)
            if not is_managed(_model_ref(target).tags):
                raise NotManagedError(f"model {name}:{version} is not managed by the app")
            for other in self._alias_holders(name, key):
                if str(other.version) != str(version):
                    self._retag(other, {k: v for k, v in (other.tags or {}).items() if k != key})
            if (target.tags or {}).get(key) != "true":
                self._retag(target, {**(target.tags or {}), key: "true"})

    def delete_model_alias(self, name: str, alias: str) -> None:
        key = alias_tag(alias)
        with azure_call(f"removing alias {alias} of model {name}"):
            for holder in self._alias_holders(name, key):
                self._retag(holder, {k: v for k, v in (holder.tags or {}).items() if k != key})

    def model_aliases(self, name: str) -> dict[str, str]:
        with azure_call(f"reading the aliases of model {name}"):
            versions = list(self.clients.workspace.models.list(name=name))
        found: dict[str, str] = {}
        for version in sorted(versions, key=lambda v: str(v.version)):
            for key, value in (version.tags or {}).items():
                if str(key).startswith(ALIAS_TAG_PREFIX) and value == "true":
                    found[str(key)[len(ALIAS_TAG_PREFIX) :]] = str(version.version)
        return found

    def _alias_holders(self, name: str, key: str) -> list[Any]:
        return [v for v in self.clients.workspace.models.list(name=name) if (v.tags or {}).get(key) == "true"]

    def _retag(self, model: Any, tags: dict[str, str]) -> None:
        model.tags = tags
        self.clients.workspace.models.create_or_update(model)

    # -- endpoints --------------------------------------------------------------------------------------------
    def begin_deploy(self, request: DeployRequest) -> None:
        self._endpoints.begin_deploy(request)

    def get_deployment(self, endpoint_name: str, deployment_name: str) -> DeploymentInfo:
        return self._endpoints.get_deployment(endpoint_name, deployment_name)

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


def _system_metadata(model: Any) -> dict[str, Any]:
    """The registry's ``system_metadata`` of a model (allow lists, deprecation dates).

    azure-ai-ml 1.35.2 keeps it on ``Model._system_metadata`` (there is no public property) and drops the
    version's ``isArchived`` flag when it builds the entity; the dates say the same for retired models.
    """
    raw = getattr(model, "system_metadata", None) or getattr(model, "_system_metadata", None)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            log.warning("model %s: system_metadata is not JSON; ignored", getattr(model, "name", "?"))
            return {}
    return dict(raw) if isinstance(raw, dict) else {}


def _model_ref(model: Any) -> ModelRef:
    return ModelRef(
        name=str(model.name),
        version=str(model.version),
        id=str(model.id),
        tags={str(k): str(v) for k, v in (getattr(model, "tags", None) or {}).items()},
    )


if TYPE_CHECKING:  # mypy proves the adapter keeps the port's shape

    def _is_a_platform(settings: Settings) -> MLPlatform:
        return AzureMLPlatform(settings)
