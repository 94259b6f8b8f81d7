"""The local adapter of the platform port: everything on this machine, no cloud.

A workspace directory (``settings.workdir``) holds an MLflow tracking store and model registry on SQLite,
one process per fine-tuning job and one HTTP server process per endpoint (see ``workspace.py`` for the
layout). Foundation models come from ``models.LOCAL_MODELS``; compute is ``local-cpu`` (and ``local-cuda``
where torch sees a GPU), see ``checks.py``. Heavy imports (mlflow, torch) happen on first use, never at import.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from local.platform import checks, eventpost
from local.platform.endpoints import Endpoints
from local.platform.jobs import Jobs
from local.platform.registry import Registry
from local.platform.workspace import Workspace
from shared.exceptions import FieldIssue, NotFoundError, RejectedError
from shared.naming import TAG_RUN_ID
from shared.platform.port import (
    CapacityCheck,
    CapacityOutcome,
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
    ModelRef,
    RegisterRequest,
)
from shared.settings import Settings
from shared.subscriptions import function_for

log = logging.getLogger(__name__)


def local_model_id(name: str, version: str) -> str:
    return f"local://models/{name}/versions/{version}"


class LocalPlatform:
    """``MLPlatform`` over a local workspace directory."""

    name = "local"
    reports_eval_metrics = True  # the local trainer evaluates on the test split before and after
    name_scope = ""  # local names need nothing beyond the run's own hash
    activity_delay = timedelta(0)  # the endpoint server records each request as it answers it

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workspace = Workspace(settings.workdir)
        self.jobs = Jobs(self.workspace, settings, webhook_key=self.webhook_key)
        self.registry = Registry(self.workspace)
        self.endpoints = Endpoints(self.workspace)

    def webhook_key(self) -> str:
        """The configured key, else the one ``autopilot up`` generated into the workdir."""
        from local.common.webhook_key import webhook_key_for

        return webhook_key_for(self.settings.webhook_key, self.settings.workdir)

    # -- model, compute, data

    def get_foundation_model(self, name: str, version: str, registry: str) -> FoundationModel:
        from local.platform.models import LOCAL_MODELS

        spec = LOCAL_MODELS.get(name)
        if spec is None:
            available = ", ".join(sorted(LOCAL_MODELS))
            raise RejectedError(
                [FieldIssue("model.name", f"the local platform has no model {name!r}; available: {available}")]
            )
        if version not in ("latest", spec.version):
            raise RejectedError(
                [FieldIssue("model.version", f"{name} has version {spec.version} only (or use `latest`)")]
            )
        return FoundationModel(
            name=spec.name,
            version=spec.version,
            id=local_model_id(spec.name, spec.version),
            tags=dict(spec.tags),
        )

    def available_clusters(self) -> list[str]:
        return checks.available_clusters()

    def check_compute(self, request: ComputeRequest, allow_list: list[str] | None) -> ComputeInfo:
        return checks.check_compute(request, allow_list)

    def check_inference_compute(self, instance_type: str, allow_list: list[str] | None) -> str:
        return checks.check_inference_compute(instance_type, allow_list)

    def check_capacity(self, request: CapacityRequest) -> list[CapacityCheck]:
        """This machine has no quota to run out of: each check is reported, as not applicable."""
        checks = [
            CapacityCheck(
                "compute.cluster", CapacityOutcome.NOT_APPLICABLE, "local platform: no quota for the fine-tune compute"
            )
        ]
        if request.inference_sku:
            checks.append(
                CapacityCheck(
                    "deployment.instance_count",
                    CapacityOutcome.NOT_APPLICABLE,
                    "local platform: no quota for the deployment",
                )
            )
        return checks

    def check_data(self, paths: dict[str, str]) -> dict[str, str]:
        return checks.check_data(self.settings.data_root, paths)

    # -- jobs

    def submit_job(self, request: JobRequest) -> JobInfo:
        return self.jobs.submit(request)

    def links(self, job_name: str | None, endpoint_name: str | None) -> dict[str, str]:
        return {}

    def get_job(self, name: str) -> JobInfo:
        return self.jobs.get(name)

    def list_jobs(self, limit: int = 500) -> list[JobInfo]:
        return self.jobs.list(limit)

    # -- models

    def cancel_job(self, name: str) -> None:
        self.jobs.cancel(name)

    def register_model(self, request: RegisterRequest) -> ModelRef:
        source, mlflow_run_id = self.jobs.model_output(request.job_name)
        model, _ = self.registry.register(
            name=request.model_name,
            source=source,
            mlflow_run_id=mlflow_run_id,
            tags=dict(request.tags),
            description=request.description,
        )
        # Posted on every call, not only the first: a retry after a lost event must still start the deploy,
        # and the deploy handler is idempotent. From a thread, because the caller is often this host's own
        # webhook handler.
        eventpost.post_in_background(
            self.settings.webhook_url,
            function_for(eventpost.MODEL_REGISTERED),
            self.webhook_key(),  # the key file too: a process without AUTOPILOT_WEBHOOK_KEY must not get a 401
            [
                eventpost.model_registered_event(
                    model.name,
                    model.version,
                    model.tags,
                    {"jobName": request.job_name},
                    topic=self.settings.workspace_topic or eventpost.LOCAL_TOPIC,
                )
            ],
        )
        return model

    def get_model(self, name: str, version: str) -> ModelRef:
        return self.registry.get(name, version)

    def list_models(self, limit: int = 500) -> list[ModelRef]:
        return self.registry.list_managed(limit)

    def set_model_alias(self, name: str, alias: str, version: str) -> None:
        self.registry.set_alias(name, alias, version)

    def delete_model_alias(self, name: str, alias: str) -> None:
        self.registry.delete_alias(name, alias)

    def model_aliases(self, name: str) -> dict[str, str]:
        return self.registry.aliases(name)

    # -- endpoints

    def begin_deploy(self, request: DeployRequest) -> None:
        if not request.tags.get(TAG_RUN_ID):
            raise RejectedError([FieldIssue("deployment", "an endpoint needs the app's tags")])
        self.check_inference_compute(request.instance_type, None)
        if request.join_endpoint and self.endpoints.read_state(request.endpoint_name) is None:
            raise NotFoundError(f"no endpoint named {request.endpoint_name!r} to add a deployment to")
        source = self.registry.source(request.model.name, request.model.version)
        self.endpoints.begin_deploy(request, source)

    def get_deployment(self, endpoint_name: str, deployment_name: str) -> DeploymentInfo:
        return self.endpoints.get_deployment(endpoint_name, deployment_name)

    def set_traffic(self, endpoint_name: str, traffic: dict[str, int]) -> None:
        self.endpoints.set_traffic(endpoint_name, traffic)

    def invoke(self, endpoint_name: str, deployment_name: str | None, payload: dict[str, Any]) -> Any:
        return self.endpoints.invoke(endpoint_name, deployment_name, payload)

    def list_endpoints(self) -> list[EndpointInfo]:
        return self.endpoints.list()

    def endpoint_activity(self, endpoint_name: str, since: datetime) -> EndpointActivity:
        return self.endpoints.activity(endpoint_name, since)

    def endpoints_activity(self, endpoint_names: Sequence[str], since: datetime) -> dict[str, EndpointActivity]:
        # The local servers count their own requests: nothing to batch, every answer is known.
        return {name: self.endpoints.activity(name, since) for name in endpoint_names}

    def list_deployments(self, endpoint_name: str) -> list[DeploymentSummary]:
        return self.endpoints.list_deployments(endpoint_name)

    def deployment_metrics(self, endpoint_name: str, since: datetime) -> dict[str, DeploymentMetrics]:
        return self.endpoints.deployment_metrics(endpoint_name, since)

    def begin_delete_deployment(self, endpoint_name: str, deployment_name: str) -> None:
        self.endpoints.delete_deployment(endpoint_name, deployment_name)

    def begin_delete_endpoint(self, endpoint_name: str) -> None:
        try:
            self.endpoints.delete(endpoint_name)
        except NotFoundError:
            return  # a name that cannot exist here is as deleted as can be

    # -- local extras (CLI)

    def endpoint_keys(self, endpoint_name: str) -> tuple[str, str]:
        """(primary, secondary); only ``autopilot endpoints --show-keys`` asks for them."""
        return self.endpoints.keys(endpoint_name)
