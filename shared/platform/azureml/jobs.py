"""The fine-tune job on Azure ML: the registry's pipeline component, the job's submit, reads, cancel and listing.

The job is the ``chat_completion_pipeline`` component in the seed's ``@pipeline`` (``pipeline.py``), named
after the run id, so a retried submit finds its job; a job found under that name that is not the run's
(``autopilot_run_id`` tag) is never adopted. A finished job's loss curve and evaluation come from the
workspace's MLflow tracking (``training_metrics.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import Any

from azure.ai.ml.exceptions import ValidationException
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError

from shared.exceptions import FieldIssue, NotFoundError, PlatformError, RejectedError, TransientPlatformError
from shared.naming import TAG_RUN_ID, is_managed
from shared.platform.azureml.clients import AzureClients
from shared.platform.azureml.errors import azure_call, short, translate
from shared.platform.azureml.offline import OfflineSources, load_component_spec
from shared.platform.azureml.pipeline import BuiltJob, build_pipeline_job
from shared.platform.azureml.training_metrics import TrainingMetrics, read_training_metrics
from shared.platform.port import JobInfo, JobRequest, JobStatus
from shared.settings import Settings

log = logging.getLogger(__name__)

# Jobs read per app-tagged job wanted, at most: the jobs listing has no tag filter, and a busy workspace holds
# many jobs that are not the app's.
SCAN_FACTOR = 4


def _is_conflict(exc: HttpResponseError) -> bool:
    text = str(getattr(exc, "message", None) or exc).lower()
    return isinstance(exc, ResourceExistsError) or exc.status_code == 409 or "already exist" in text


class Jobs:
    """Pipeline jobs in one workspace, built from the registry's component (or the offline spec)."""

    def __init__(self, settings: Settings, clients: AzureClients, offline: OfflineSources) -> None:
        self._settings = settings
        self._clients = clients
        self._offline = offline

    def component(self, name: str, version: str) -> Any:
        """The pipeline component: the offline spec, or the registry's (label latest or a pinned version)."""
        if self._offline.component_spec is not None:
            return load_component_spec(self._offline.component_spec)
        registry = self._settings.azureml_registry
        client = self._clients.registry(registry)
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
        workspace = self._clients.workspace
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
        info = _job_info(job)
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
            job = self._clients.workspace.jobs.get(name)
        info = _job_info(job)
        if info.status != JobStatus.COMPLETED:
            return info
        found = self._training_metrics(info.name)
        return dataclasses.replace(info, metrics=found.metrics, history=found.history)

    def _training_metrics(self, job_name: str) -> TrainingMetrics:
        """A finished job's loss curve and evaluation, from the workspace's MLflow tracking; none (logged) when
        the tracking store cannot be reached for a reason a later look would not change."""
        from mlflow.exceptions import MlflowException

        try:
            client = self._clients.mlflow()
        except TransientPlatformError:
            raise
        except (PlatformError, MlflowException) as exc:
            log.warning("job %s: no training metrics: %s", job_name, exc)
            return TrainingMetrics()
        return read_training_metrics(client, job_name)

    def cancel_job(self, name: str) -> None:
        try:
            with azure_call(f"canceling job {name}"):
                self._clients.workspace.jobs.begin_cancel(name)  # the poller is not waited on
        except NotFoundError:
            return

    def list_jobs(self, limit: int = 500) -> list[JobInfo]:
        # Top-level jobs only (the pipeline, not its steps), the service's order (newest first). The listing
        # has no tag filter, so at most ``SCAN_FACTOR * limit`` jobs are read, whatever the workspace holds.
        found: list[JobInfo] = []
        with azure_call("listing jobs"):
            for job in itertools.islice(self._clients.workspace.jobs.list(), SCAN_FACTOR * max(limit, 0)):
                if len(found) >= limit:
                    break
                if is_managed({str(k): str(v) for k, v in (getattr(job, "tags", None) or {}).items()}):
                    found.append(_job_info(job))
        return found


def _job_info(job: Any) -> JobInfo:
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
