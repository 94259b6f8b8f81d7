"""The ML platform port: the one interface the services use. Adapters: ``local`` (embedded) and ``azureml``.

Contract every adapter keeps:
- every create is idempotent and keyed by names the caller derives from the run id (a retry finds the
  thing it made before and returns it; a foreign thing with the same name is an error, never adopted);
- nothing blocks on a long-running operation: deployment and deletion are started and inspected later;
- every resource it creates carries the tags passed in (``autopilot_run_id``, ``autopilot_managed``), and it
  refuses to delete or change endpoints without them (``NotManagedError``);
- it never deletes a deployment that carries traffic (``begin_delete_deployment`` refuses with
  ``PlatformError`` code ``DeploymentHasTraffic``), and an endpoint holds at most
  ``MAX_DEPLOYMENTS_PER_ENDPOINT`` deployments (Azure's quota);
- failures the user must fix raise ``RejectedError`` (with field paths), retryable ones
  ``TransientPlatformError``, missing things ``NotFoundError``; no secret ever appears in a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from shared.config.component import ComponentParams


@dataclass(frozen=True)
class FoundationModel:
    """A model to fine-tune, with the registry's tags (allow lists and ``model_specific_defaults``)."""

    name: str
    version: str
    id: str  # the asset id passed to the pipeline (``azureml://registries/.../models/<name>/versions/<v>``)
    tags: dict[str, str] = field(default_factory=dict)
    # The registry's ``system_metadata`` (allow lists in ``supportedComputes``, dates in ``deprecation``) and
    # its archived flag; read by ``shared.config.model_tags``. Empty for models that have none (local).
    system_metadata: dict[str, Any] = field(default_factory=dict)
    archived: bool = False


@dataclass(frozen=True)
class ComputeRequest:
    """The compute the config asks for (``cluster`` is a cluster name, ``serverless`` or ``local-cpu``)."""

    cluster: str
    instance_type: str | None
    gpus_per_node: int | None  # None: read it from the SKU
    nodes: int = 1


@dataclass(frozen=True)
class ComputeInfo:
    """The validated compute: the SKU it runs on and its GPUs per node."""

    cluster: str
    size: str
    gpus_per_node: int
    notes: tuple[str, ...] = ()


class JobStatus(StrEnum):
    """Azure ML run statuses the app acts on. ``parse`` is the one reader of a status string, for events and
    for both adapters; ``UNKNOWN`` (a status nobody mapped) is never terminal, so nothing is decided on it."""

    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    PREPARING = "Preparing"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    UNKNOWN = "Unknown"

    @property
    def is_terminal(self) -> bool:
        return self in {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}

    @property
    def is_waiting(self) -> bool:
        return self in {JobStatus.NOT_STARTED, JobStatus.QUEUED, JobStatus.PREPARING}

    @property
    def is_running(self) -> bool:
        return self in {JobStatus.RUNNING, JobStatus.FINALIZING}

    @classmethod
    def parse(cls, value: object) -> JobStatus:
        """A run status as Azure ML (the SDK's ``job.status``, or ``runStatus`` in an event) or the local
        platform spells it, any casing; statuses between the ones the app acts on map to the nearest."""
        return _JOB_STATUSES.get(str(value or "").strip().lower(), cls.UNKNOWN)


# Azure ML's JobStatus values (azure.ai.ml.constants.JobStatus) -> the ones the app acts on. A cancel that
# was asked for, a node that stopped answering or a paused job may still go on: running until it ends.
_JOB_STATUSES: dict[str, JobStatus] = {
    **{status.value.lower(): status for status in JobStatus},
    "starting": JobStatus.PREPARING,
    "provisioning": JobStatus.PREPARING,
    "cancelrequested": JobStatus.RUNNING,
    "notresponding": JobStatus.RUNNING,
    "paused": JobStatus.RUNNING,
}


@dataclass(frozen=True)
class JobRequest:
    """Everything needed to submit the fine-tuning pipeline job; ``name`` is the run id."""

    name: str
    experiment_name: str
    display_name: str
    foundation_model: FoundationModel
    compute: ComputeInfo
    params: ComponentParams  # the effective component inputs, typed
    train_data: str
    validation_data: str | None
    test_data: str | None
    tags: dict[str, str]
    component_name: str = "chat_completion_pipeline"
    component_version: str = "latest"
    # Compute for the non-finetune steps; the adapter may use ``compute`` for all.
    instance_type: str | None = None


@dataclass(frozen=True)
class TrainingProgress:
    """Where a training job is, as the platform last reported it (shared/progress.py estimates its finish)."""

    step: int
    total_steps: int | None = None
    loss: float | None = None
    tokens_per_second: float | None = None
    trained_tokens: int | None = None  # tokens through forward and backward so far (OpenAI's ``trained_tokens``)
    train_seconds: float | None = None  # training time to ``step``, evaluations and checkpoint saves left out
    at: datetime | None = None  # when the platform reported it


@dataclass(frozen=True)
class JobInfo:
    name: str
    status: JobStatus
    tags: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # why it failed, when it did
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. eval_loss_before/after, train tokens/s
    progress: str | None = None  # one line for `autopilot status`
    # A short loss curve (a few dozen points: step, loss, mean_token_accuracy and/or validation_loss), where
    # the platform reports one; empty otherwise.
    history: list[dict[str, float]] = field(default_factory=list)
    training: TrainingProgress | None = None  # steps, tokens and timing, where the platform reports them
    loss_curve: str | None = None  # a picture of the loss curve (a local PNG), where the platform draws one


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    id: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisterRequest:
    job_name: str
    model_name: str
    description: str
    tags: dict[str, str]


# Azure ML's limit per endpoint ("Number of deployments per endpoint: 20", how-to-manage-quotas,
# https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas); the local platform keeps it.
MAX_DEPLOYMENTS_PER_ENDPOINT = 20


@dataclass(frozen=True)
class DeployRequest:
    endpoint_name: str
    deployment_name: str
    model: ModelRef
    instance_type: str
    instance_count: int
    request_timeout_ms: int
    liveness_initial_delay_s: int
    max_concurrent_requests: int
    description: str
    tags: dict[str, str]  # app tags plus the idle policy (autopilot_idle_after_minutes, autopilot_keep)
    # True: add the deployment (at 0% traffic) to an existing app-managed endpoint of another run, a canary;
    # False: the endpoint is this run's own, created if missing, and another run's endpoint is refused.
    join_endpoint: bool = False


class DeploymentState(StrEnum):
    CREATING = "Creating"
    UPDATING = "Updating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    DELETING = "Deleting"
    MISSING = "Missing"  # neither endpoint nor deployment exists


@dataclass(frozen=True)
class DeploymentInfo:
    endpoint_name: str
    deployment_name: str
    state: DeploymentState
    error_code: str | None = None  # OutOfQuota, ImageBuildFailure, ResourceNotReady, ...
    error_message: str | None = None
    scoring_uri: str | None = None


@dataclass(frozen=True)
class DeploymentSummary:
    """One deployment of an endpoint: its run (from its tags), provisioning state and traffic share."""

    name: str
    run_id: str | None
    state: DeploymentState
    traffic: int  # percent


# Azure ML's managed endpoints answer 424 ("Model Error") when the model container answered anything but 200,
# which is how a crashing scoring script reaches the client; 5xx are the endpoint's own failures. Both count
# against a deployment (https://learn.microsoft.com/azure/machine-learning/how-to-troubleshoot-online-endpoints,
# "HTTP status codes"). A 424 can also wrap the container's 4xx for a bad request: counted too, so a canary
# errs on the side of failing.
MODEL_ERROR_STATUS = 424


def counts_as_deployment_error(status: int | str) -> bool:
    """Whether a scoring answer's HTTP status is an error of the deployment (5xx, or Azure's 424)."""
    text = str(status).strip()
    return text.startswith("5") or text == str(MODEL_ERROR_STATUS)


@dataclass(frozen=True)
class DeploymentMetrics:
    """Scoring requests a deployment answered since a time, and how many were its errors (5xx or 424).

    ``known`` False: the platform reported nothing for the window, which says nothing either way."""

    requests: int
    errors: int
    known: bool = True

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class EndpointInfo:
    name: str
    tags: dict[str, str]
    created_at: datetime | None
    scoring_uri: str | None = None
    state: str | None = None  # provisioning state as the platform reports it
    healthy: bool | None = None  # None: unknown


@dataclass(frozen=True)
class EndpointActivity:
    """Requests seen by an endpoint in the window looked at: ``last_request_at`` None means none.

    ``known`` False: the platform had no data for the window (no metric reported, or an error), which says
    nothing about idleness; the cleanup deletes only on known, positive evidence."""

    last_request_at: datetime | None
    request_count: int
    known: bool = True


class MLPlatform(Protocol):
    """The interface the services drive. See the module docstring for the contract."""

    name: str  # "local" or "azureml"
    reports_eval_metrics: bool  # whether finished jobs report eval_loss_before/after (quality gates need it)
    # How late a request shows in ``endpoint_activity``: an idle check due at a deadline waits this much more,
    # so a request just before the deadline is seen (Azure Monitor's ingestion; nothing locally).
    activity_delay: timedelta

    @property
    def name_scope(self) -> str:
        """What makes derived names unique beyond the run, where the platform's names must be (Azure ML: its
        workspace, as endpoint names are unique per region); "" where the run's own hash is enough (local)."""

    def get_foundation_model(self, name: str, version: str, registry: str) -> FoundationModel:
        """The model and its tags. Unknown model: ``RejectedError`` listing the available ones."""

    def check_compute(self, request: ComputeRequest, allow_list: list[str] | None) -> ComputeInfo:
        """Validate fine-tune compute as the seed does (exists, not failed, SKU allowed, GPU count)."""

    def check_inference_compute(self, instance_type: str, allow_list: list[str] | None) -> str:
        """Validate the inference SKU against the allow list; returns the SKU to use."""

    def check_data(self, paths: dict[str, str]) -> dict[str, str]:
        """Validate/resolve data inputs ({"train": ..., ...}); returns what the job should read."""

    def submit_job(self, request: JobRequest) -> JobInfo:
        """Submit, or find the job already submitted under ``request.name`` with the same run id tag."""

    def get_job(self, name: str) -> JobInfo:
        """Status of a job; ``NotFoundError`` when there is none."""

    def cancel_job(self, name: str) -> None:
        """Start canceling a job, without waiting; a finished or missing job is success."""

    def links(self, job_name: str | None, endpoint_name: str | None) -> dict[str, str]:
        """Where a person looks at the job and the endpoint in the platform's own UI (``job``, ``endpoint``:
        Azure ML studio pages); empty where the platform has none. Built from names, no call."""

    def list_jobs(self, limit: int = 500) -> list[JobInfo]:
        """Jobs carrying the app's tags, newest first, at most ``limit``."""

    def register_model(self, request: RegisterRequest) -> ModelRef:
        """Register the job's model output; a retry returns the version registered before."""

    def get_model(self, name: str, version: str) -> ModelRef:
        """A registered model version with its tags."""

    def list_models(self, limit: int = 500) -> list[ModelRef]:
        """Model versions carrying the app's tags, at most ``limit``."""

    def set_model_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` (``champion``, ``challenger``) of model ``name`` at ``version``, moving it off any other
        version (idempotent); only on a version the app registered (``NotManagedError`` otherwise)."""

    def delete_model_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` from model ``name`` (nothing to do when no version has it)."""

    def model_aliases(self, name: str) -> dict[str, str]:
        """Model ``name``'s aliases: alias -> version (empty for a model not registered)."""

    def begin_deploy(self, request: DeployRequest) -> None:
        """Start creating endpoint + deployment (idempotent); returns without waiting."""

    def get_deployment(self, endpoint_name: str, deployment_name: str) -> DeploymentInfo:
        """Provisioning state of a deployment (``MISSING`` if neither exists)."""

    def set_traffic(self, endpoint_name: str, traffic: dict[str, int]) -> None:
        """Route traffic (percent per deployment)."""

    def invoke(self, endpoint_name: str, deployment_name: str | None, payload: dict[str, Any]) -> Any:
        """Send a scoring request (the Azure ML chat payload) and return the decoded answer."""

    def list_endpoints(self) -> list[EndpointInfo]:
        """Endpoints carrying the app's tags (``autopilot_managed=true``)."""

    def endpoint_activity(self, endpoint_name: str, since: datetime) -> EndpointActivity:
        """One endpoint's requests since ``since``."""

    def endpoints_activity(self, endpoint_names: Sequence[str], since: datetime) -> dict[str, EndpointActivity]:
        """Many endpoints' requests since ``since``, in as few platform calls as it allows (one name each)."""

    def begin_delete_endpoint(self, endpoint_name: str) -> None:
        """Start deleting an app-managed endpoint and its deployments; missing is success."""

    def check_capacity(self, request: CapacityRequest) -> list[CapacityCheck]:
        """Quota and capacity for the job and the deployment, as far as the platform can tell now. Never
        raises for a shortage (the caller decides: reject, warn or ignore); platform trouble is ``UNKNOWN``."""

    def list_deployments(self, endpoint_name: str) -> list[DeploymentSummary]:
        """The deployments of an app-managed endpoint with their traffic; ``NotFoundError`` if it is missing."""

    def deployment_metrics(self, endpoint_name: str, since: datetime) -> dict[str, DeploymentMetrics]:
        """Requests and server errors per deployment since ``since`` (a deployment with none may be absent)."""

    def begin_delete_deployment(self, endpoint_name: str, deployment_name: str) -> None:
        """Start deleting one deployment of an app-managed endpoint; missing is success; one carrying traffic
        is refused (``PlatformError`` code ``DeploymentHasTraffic``)."""


# -- quota and capacity, checked at submit before any GPU hour (issue 11) --------------------------------------
@dataclass(frozen=True)
class CapacityRequest:
    """What a run will hold: the fine-tune compute for the job, then the deployment's instances."""

    compute: ComputeRequest
    compute_size: str  # the fine-tune VM size as check_compute resolved it
    inference_sku: str | None  # None: the run deploys nothing
    inference_instances: int = 1


class CapacityOutcome(StrEnum):
    OK = "ok"
    SHORT = "short"  # cannot fit: the run would fail (deploy: OutOfQuota) or never start
    BUSY = "busy"  # fits the limit, but other work holds the quota now: the job waits in the queue
    NOT_APPLICABLE = "not_applicable"  # the platform has no quota (local)
    UNKNOWN = "unknown"  # could not be checked (no workspace offline, no usage reported, no permission)


@dataclass(frozen=True)
class CapacityCheck:
    """One quota or capacity check: the config field it is about, the outcome, and a sentence with the numbers."""

    path: str
    outcome: CapacityOutcome
    message: str
