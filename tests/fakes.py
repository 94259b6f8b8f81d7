"""Test doubles with state: an in-memory ledger and status store, a fake ML platform, a clock you move.

The fake platform keeps jobs, models and endpoints like a workspace would, enforces the port's contract
(idempotent creates keyed by name, app tags required for deletes) and counts what it created, so tests
assert on state ("exactly one endpoint") rather than on call lists.
"""

from __future__ import annotations

import builtins
import copy
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.exceptions import (
    AlreadyExistsError,
    ConcurrencyError,
    FieldIssue,
    NotFoundError,
    NotManagedError,
    PlatformError,
    RejectedError,
    TransientPlatformError,
)
from shared.ledger.limits import checked_json
from shared.ledger.port import ActiveEntry, OwingEntry
from shared.ledger.record import NESTED_FIELDS, RunRecord
from shared.naming import TAG_RUN_ID, is_managed
from shared.platform.port import (
    MAX_DEPLOYMENTS_PER_ENDPOINT,
    CapacityCheck,
    CapacityOutcome,
    CapacityRequest,
    ComputeInfo,
    ComputeRequest,
    DeploymentInfo,
    DeploymentMetrics,
    DeploymentState,
    DeploymentSummary,
    DeployRequest,
    EndpointActivity,
    EndpointInfo,
    FoundationModel,
    JobInfo,
    JobRequest,
    JobStatus,
    ModelRef,
    RegisterRequest,
    TrainingProgress,
)
from shared.runs import RunStore
from shared.states import TERMINAL, RunState


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


class InMemoryLedger:
    """``Ledger`` with ETags and the active/recent indexes; ``concurrent_writes`` simulates another writer.

    It keeps the stored form ``TableLedger`` keeps (``RunRecord.to_dict``, nested fields within the table's
    property limit), and the ledger contract suite (tests/functional/shared/test_ledger_contract.py) holds the
    two to the same behaviour. ``calls`` counts reads and writes by kind, so tests can show what a sweep
    touches."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[str, dict[str, Any]]] = {}
        self._active: dict[str, ActiveEntry] = {}
        self._owing: dict[str, OwingEntry] = {}
        self._etags = itertools.count(1)
        self.concurrent_writes = 0
        self.calls: Counter[str] = Counter()
        self.unreadable: set[str] = set()  # run ids whose reads fail, as storage can for a moment

    def _etag(self) -> str:
        return f'W/"{next(self._etags)}"'

    def lose(self, run_id: str) -> None:
        """The run's row and index entry vanish, as the last writes did when Azurite was killed hard."""
        self._rows.pop(run_id, None)
        self._active.pop(run_id, None)

    def get(self, run_id: str) -> RunRecord | None:
        self.calls["get"] += 1
        if run_id in self.unreadable:
            raise OSError(f"connection reset reading {run_id}")
        row = self._rows.get(run_id)
        if row is None:
            return None
        record = RunRecord.from_dict(copy.deepcopy(row[1]))
        record.etag = row[0]
        return record

    def _stored(self, record: RunRecord) -> dict[str, Any]:
        data = record.to_dict()
        for key in NESTED_FIELDS:
            checked_json(key, data[key])
        return data

    def create(self, record: RunRecord) -> RunRecord:
        data = self._stored(record)
        if record.state not in TERMINAL and record.run_id not in self._active:
            self._active[record.run_id] = ActiveEntry(record.run_id, record.created_at, etag=self._etag())
        if record.run_id in self._rows:
            if RunState(self._rows[record.run_id][1]["state"]) in TERMINAL:
                self.drop_active(record.run_id)  # a re-delivered blob of a finished run
            raise AlreadyExistsError(record.run_id)
        self._rows[record.run_id] = (self._etag(), data)
        stored = self.get(record.run_id)
        assert stored is not None
        return stored

    def replace(self, record: RunRecord) -> RunRecord:
        self.calls["replace"] += 1
        current = self._rows.get(record.run_id)
        if current is None or current[0] != record.etag:
            raise ConcurrencyError(record.run_id)
        if self.concurrent_writes:
            # Someone else wrote in between: bump the ETag and make this writer re-read.
            self.concurrent_writes -= 1
            self._rows[record.run_id] = (self._etag(), current[1])
            raise ConcurrencyError(record.run_id)
        data = self._stored(record)
        etag = self._etag()
        self._rows[record.run_id] = (etag, data)
        record.etag = etag
        if record.state in TERMINAL:
            self.drop_active(record.run_id)
        return record

    def list(self, states: Iterable[RunState] | None = None) -> list[RunRecord]:
        self.calls["list"] += 1
        wanted = set(states) if states is not None else None
        out = [self.get(k) for k in self._rows]
        return sorted(
            (r for r in out if r is not None and (wanted is None or r.state in wanted)),
            key=lambda r: (r.created_at, r.run_id),  # the table's order: creation, then key
        )

    def with_prefix(self, prefix: str) -> builtins.list[RunRecord]:
        return [r for r in self.list() if r.run_id.startswith(prefix)]

    def active(self) -> builtins.list[ActiveEntry]:
        self.calls["active"] += 1
        return list(self._active.values())

    def claim(self, entry: ActiveEntry, now: datetime, until: datetime) -> bool:
        self.calls["claim"] += 1
        current = self._active.get(entry.run_id)
        if current is None or current.etag != entry.etag:
            return False
        if current.lease_until is not None and current.lease_until > now:
            return False
        self._active[entry.run_id] = replace(current, handled_at=now, lease_until=until, etag=self._etag())
        return True

    def release(self, run_id: str) -> None:
        current = self._active.get(run_id)
        if current is not None:
            self._active[run_id] = replace(current, lease_until=None, etag=self._etag())

    def drop_active(self, run_id: str) -> None:
        self._active.pop(run_id, None)

    def recent(self, limit: int, *, skip: int = 0) -> builtins.list[str]:
        # The table's key order: newest first (to the millisecond), then by run id.
        def newest_first(run_id: str) -> tuple[int, str]:
            created = datetime.fromisoformat(self._rows[run_id][1]["created_at"])
            return -int(created.timestamp() * 1000), run_id

        return sorted(self._rows, key=newest_first)[skip : skip + limit]

    def owing(self) -> builtins.list[OwingEntry]:
        self.calls["owing"] += 1
        return list(self._owing.values())

    def mark_owing(self, run_id: str, at: datetime) -> None:
        self.calls["mark_owing"] += 1
        self._owing[run_id] = OwingEntry(run_id, at, etag=self._etag())

    def drop_owing(self, entry: OwingEntry) -> bool:
        current = self._owing.get(entry.run_id)
        if current is None:
            return True
        if current.etag != entry.etag:
            return False
        del self._owing[entry.run_id]
        return True


class InMemoryStatusStore:
    """``StatusStore`` in memory: each write bumps the blob's version, as a blob's ETag changes."""

    def __init__(self) -> None:
        self.blobs: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}

    def write(self, blob_name: str, document: dict[str, Any]) -> None:
        self.blobs[blob_name] = copy.deepcopy(document)
        self.versions[blob_name] = self.versions.get(blob_name, 0) + 1

    def read(self, blob_name: str) -> dict[str, Any] | None:
        return self.blobs.get(blob_name)

    def read_versioned(self, blob_name: str) -> tuple[dict[str, Any] | None, str | None]:
        if blob_name not in self.blobs:
            return None, None
        return copy.deepcopy(self.blobs[blob_name]), str(self.versions[blob_name])

    def write_if(self, blob_name: str, document: dict[str, Any], version: str | None) -> bool:
        current = str(self.versions[blob_name]) if blob_name in self.blobs else None
        if current != version:
            return False
        self.write(blob_name, document)
        return True


PHI3_TAGS = {
    "finetune_compute_allow_list": "['Standard_NC24rs_v3', 'Standard_NC24ads_A100_v4', 'Standard_ND96asr_v4']",
    "inference_compute_allow_list": "['Standard_NC24ads_A100_v4', 'Standard_NC48ads_A100_v4']",
    "model_specific_defaults": "{'apply_deepspeed': 'true', 'apply_lora': 'true', 'precision': '16'}",
}


@dataclass
class FakeJob:
    request: JobRequest
    status: JobStatus = JobStatus.QUEUED
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    training: TrainingProgress | None = None  # what a look at the job reports of its steps


@dataclass
class FakeEndpoint:
    name: str
    tags: dict[str, str]
    created_at: datetime
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)
    last_request_at: datetime | None = None
    requests: int = 0
    healthy: bool = True
    error_code: str | None = None
    metrics_missing: bool = False  # the platform reports no data for it (the idle check must not guess)
    deployment_runs: dict[str, str] = field(default_factory=dict)  # deployment -> its run id tag
    # deployment -> (requests, 5xx answers) the scoring route saw: what deployment_metrics reports
    served: dict[str, list[int]] = field(default_factory=dict)


class FakePlatform:
    """A workspace in memory. Knobs: ``fail_next`` (method -> exception), ``deployment_outcome``."""

    name = "fake"
    reports_eval_metrics = True
    name_scope = ""
    activity_delay = timedelta(0)

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.models = {
            "Phi-3-mini-4k-instruct": FoundationModel(
                "Phi-3-mini-4k-instruct",
                "7",
                "azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/7",
                dict(PHI3_TAGS),
            )
        }
        self.clusters = {
            "gpu-cluster": ("Standard_NC24ads_A100_v4", "Succeeded"),
            "broken": ("Standard_NC24ads_A100_v4", "Failed"),
        }
        self.gpus = {"standard_nc24ads_a100_v4": 1, "standard_nc24rs_v3": 4}
        self.jobs: dict[str, FakeJob] = {}
        self.registered: dict[tuple[str, str], ModelRef] = {}
        self.aliases: dict[str, dict[str, str]] = {}  # model name -> alias -> version
        self.endpoints: dict[str, FakeEndpoint] = {}
        self.deleted_endpoints: list[str] = []
        self.activity_calls = 0  # endpoints_activity calls: the cleanup asks for many endpoints at once
        self.fail_next: dict[str, Exception] = {}
        self.capacity: dict[str, tuple[CapacityOutcome, str]] = {}
        self.capacity_requests: list[CapacityRequest] = []
        self.deployment_outcome = DeploymentState.SUCCEEDED
        self.deployment_error_code: str | None = None
        self.invoke_answer: Any = [{"0": "Here is a packing list."}]
        self.invocations: list[dict[str, Any]] = []
        self.failing_deployments: set[str] = set()  # deployments whose scoring answers 500
        self.deleted_deployments: list[str] = []
        self.submit_calls = 0

    def _maybe_fail(self, method: str) -> None:
        exc = self.fail_next.pop(method, None)
        if exc is not None:
            raise exc

    # -- models, compute, data
    def get_foundation_model(self, name: str, version: str, registry: str) -> FoundationModel:
        self._maybe_fail("get_foundation_model")
        if name not in self.models:
            raise RejectedError([FieldIssue("model.name", f"no model {name!r}; available: {sorted(self.models)}")])
        return self.models[name]

    def check_compute(self, request: ComputeRequest, allow_list: list[str] | None) -> ComputeInfo:
        if request.cluster == "serverless":
            size = request.instance_type or ""
        elif request.cluster not in self.clusters:
            raise RejectedError([FieldIssue("compute.cluster", f"no compute {request.cluster!r} in the workspace")])
        else:
            size, state = self.clusters[request.cluster]
            if state.lower() == "failed":
                raise RejectedError([FieldIssue("compute.cluster", f"provisioning failed for {request.cluster!r}")])
        if allow_list is not None and size.lower() not in {a.lower() for a in allow_list}:
            raise RejectedError(
                [FieldIssue("compute.cluster", f"VM size {size} is not in the allow list {allow_list}")]
            )
        gpus = self.gpus.get(size.lower())
        if gpus is None:
            raise RejectedError([FieldIssue("compute.cluster", f"GPU count for {size} not found")])
        return ComputeInfo(request.cluster, size, request.gpus_per_node or gpus)

    def check_inference_compute(self, instance_type: str, allow_list: list[str] | None) -> str:
        sku = instance_type or "Standard_NC24ads_A100_v4"
        if allow_list is not None and sku.lower() not in {a.lower() for a in allow_list}:
            raise RejectedError([FieldIssue("deployment.instance_type", f"{sku} not in {allow_list}")])
        return sku

    def check_data(self, paths: dict[str, str]) -> dict[str, str]:
        return dict(paths)

    def check_capacity(self, request: CapacityRequest) -> list[CapacityCheck]:
        """``capacity`` (config path -> (outcome, message)) says what the quota would be; OK by default."""
        self.capacity_requests.append(request)
        paths = ["compute.cluster"] + (["deployment.instance_count"] if request.inference_sku else [])
        return [CapacityCheck(path, *self.capacity.get(path, (CapacityOutcome.OK, f"{path}: fits"))) for path in paths]

    # -- jobs
    def submit_job(self, request: JobRequest) -> JobInfo:
        self.submit_calls += 1
        self._maybe_fail("submit_job")
        existing = self.jobs.get(request.name)
        if existing is not None:
            if existing.request.tags.get(TAG_RUN_ID) != request.tags.get(TAG_RUN_ID):
                raise PlatformError(f"job {request.name} exists and belongs to another run")
        else:
            self.jobs[request.name] = FakeJob(request)
        return self.get_job(request.name)

    def links(self, job_name: str | None, endpoint_name: str | None) -> dict[str, str]:
        return {}

    def get_job(self, name: str) -> JobInfo:
        job = self.jobs.get(name)
        if job is None:
            raise NotFoundError(f"no job {name}")
        return JobInfo(name, job.status, dict(job.request.tags), job.error, dict(job.metrics), training=job.training)

    def list_jobs(self, limit: int = 500) -> list[JobInfo]:
        self._maybe_fail("list_jobs")
        named = [name for name, job in self.jobs.items() if is_managed(job.request.tags)]
        return [self.get_job(name) for name in reversed(named)][:limit]

    def cancel_job(self, name: str) -> None:
        self._maybe_fail("cancel_job")
        job = self.jobs.get(name)
        if job is not None and not job.status.is_terminal:
            job.status = JobStatus.CANCELED

    def finish_job(self, name: str, status: JobStatus = JobStatus.COMPLETED, error: str | None = None) -> None:
        self.jobs[name].status = status
        self.jobs[name].error = error
        if status == JobStatus.COMPLETED:
            self.jobs[name].metrics = {"eval_loss_before": 2.0, "eval_loss_after": 1.5}

    # -- models
    def register_model(self, request: RegisterRequest) -> ModelRef:
        self._maybe_fail("register_model")
        if request.job_name not in self.jobs:
            raise NotFoundError(f"no job {request.job_name}")
        for ref in self.registered.values():
            if ref.name == request.model_name and ref.tags.get(TAG_RUN_ID) == request.tags.get(TAG_RUN_ID):
                return ref
        version = str(1 + sum(1 for (n, _) in self.registered if n == request.model_name))
        ref = ModelRef(request.model_name, version, f"models:/{request.model_name}/{version}", dict(request.tags))
        self.registered[(request.model_name, version)] = ref
        return ref

    def get_model(self, name: str, version: str) -> ModelRef:
        try:
            return self.registered[(name, version)]
        except KeyError:
            raise NotFoundError(f"no model {name}:{version}") from None

    def list_models(self, limit: int = 500) -> list[ModelRef]:
        self._maybe_fail("list_models")
        return [ref for ref in self.registered.values() if is_managed(ref.tags)][:limit]

    def set_model_alias(self, name: str, alias: str, version: str) -> None:
        self._maybe_fail("set_model_alias")
        if not is_managed(self.get_model(name, version).tags):
            raise NotManagedError(f"model {name}:{version} is not managed by the app")
        self.aliases.setdefault(name, {})[alias] = version

    def delete_model_alias(self, name: str, alias: str) -> None:
        self._maybe_fail("delete_model_alias")
        self.aliases.get(name, {}).pop(alias, None)

    def model_aliases(self, name: str) -> dict[str, str]:
        return dict(self.aliases.get(name, {}))

    # -- endpoints
    def begin_deploy(self, request: DeployRequest) -> None:
        self._maybe_fail("begin_deploy")
        ep = self.endpoints.get(request.endpoint_name)
        if ep is None:
            if request.join_endpoint:
                raise NotFoundError(f"no endpoint {request.endpoint_name} to add a deployment to")
            ep = FakeEndpoint(request.endpoint_name, dict(request.tags), self.clock())
            self.endpoints[request.endpoint_name] = ep
        elif not is_managed(ep.tags):
            raise NotManagedError(f"endpoint {request.endpoint_name} is not managed by the app")
        elif not request.join_endpoint and ep.tags.get(TAG_RUN_ID) != request.tags.get(TAG_RUN_ID):
            raise PlatformError(f"endpoint {request.endpoint_name} belongs to another run")
        owner = ep.deployment_runs.get(request.deployment_name)
        if owner is not None and owner != request.tags.get(TAG_RUN_ID):
            raise PlatformError(f"deployment {request.deployment_name} belongs to another run", code="Conflict")
        if owner is None and len(ep.deployments) >= MAX_DEPLOYMENTS_PER_ENDPOINT:
            raise PlatformError("too many deployments on the endpoint", code="QuotaExceeded")
        ep.deployments.setdefault(request.deployment_name, DeploymentState.CREATING)
        ep.deployment_runs[request.deployment_name] = request.tags.get(TAG_RUN_ID, "")

    def complete_deployments(self) -> None:
        """The platform finishes provisioning (what the LRO would do in Azure)."""
        for ep in self.endpoints.values():
            for dep, state in ep.deployments.items():
                if state == DeploymentState.CREATING:
                    ep.deployments[dep] = self.deployment_outcome
                    ep.error_code = self.deployment_error_code

    def get_deployment(self, endpoint_name: str, deployment_name: str) -> DeploymentInfo:
        self._maybe_fail("get_deployment")
        ep = self.endpoints.get(endpoint_name)
        if ep is None or deployment_name not in ep.deployments:
            return DeploymentInfo(endpoint_name, deployment_name, DeploymentState.MISSING)
        state = ep.deployments[deployment_name]
        failed = state == DeploymentState.FAILED
        return DeploymentInfo(
            endpoint_name,
            deployment_name,
            state,
            error_code=ep.error_code if failed else None,
            error_message="not enough quota" if failed else None,
            scoring_uri=f"https://{endpoint_name}.example/score",
        )

    def set_traffic(self, endpoint_name: str, traffic: dict[str, int]) -> None:
        if endpoint_name not in self.endpoints:
            raise NotFoundError(f"no endpoint {endpoint_name}")
        ep = self.endpoints[endpoint_name]
        if not is_managed(ep.tags):
            raise NotManagedError(f"endpoint {endpoint_name} is not managed by the app")
        unknown = sorted(set(traffic) - set(ep.deployments))
        if unknown:
            raise NotFoundError(f"endpoint {endpoint_name} has no deployment {', '.join(unknown)}")
        if sum(traffic.values()) not in (0, 100):
            raise PlatformError("traffic must add up to 100", code="BadArgument")
        ep.traffic = {k: v for k, v in traffic.items() if v}

    def invoke(self, endpoint_name: str, deployment_name: str | None, payload: dict[str, Any]) -> Any:
        self._maybe_fail("invoke")
        ep = self.endpoints[endpoint_name]
        if deployment_name is not None and deployment_name not in ep.deployments:
            raise NotFoundError(f"endpoint {endpoint_name} has no deployment {deployment_name}")
        ep.requests += 1
        ep.last_request_at = self.clock()
        self.invocations.append(payload)
        target = deployment_name or max(ep.traffic, key=lambda d: ep.traffic[d], default="")
        served = ep.served.setdefault(target, [0, 0])
        served[0] += 1
        if target in self.failing_deployments:
            served[1] += 1
            raise PlatformError(f"endpoint {endpoint_name} answered HTTP 500", code="500")
        return self.invoke_answer

    def serve(self, endpoint_name: str, deployment_name: str, requests: int, errors: int = 0) -> None:
        """Traffic arriving at a deployment while it is observed (what callers of the endpoint would send)."""
        served = self.endpoints[endpoint_name].served.setdefault(deployment_name, [0, 0])
        served[0] += requests
        served[1] += errors

    def list_deployments(self, endpoint_name: str) -> list[DeploymentSummary]:
        ep = self.endpoints.get(endpoint_name)
        if ep is None:
            raise NotFoundError(f"no endpoint {endpoint_name}")
        return [
            DeploymentSummary(name, ep.deployment_runs.get(name), state, ep.traffic.get(name, 0))
            for name, state in ep.deployments.items()
        ]

    def deployment_metrics(self, endpoint_name: str, since: datetime) -> dict[str, DeploymentMetrics]:
        self._maybe_fail("deployment_metrics")
        ep = self.endpoints.get(endpoint_name)
        if ep is None:
            raise NotFoundError(f"no endpoint {endpoint_name}")
        return {name: DeploymentMetrics(n, e) for name, (n, e) in ep.served.items() if name in ep.deployments}

    def begin_delete_deployment(self, endpoint_name: str, deployment_name: str) -> None:
        self._maybe_fail("begin_delete_deployment")
        ep = self.endpoints.get(endpoint_name)
        if ep is not None and not is_managed(ep.tags):  # before "missing is success", as the adapters check
            raise NotManagedError(f"endpoint {endpoint_name} is not managed by the app")
        if ep is None or deployment_name not in ep.deployments:
            return
        if ep.traffic.get(deployment_name, 0) > 0:
            raise PlatformError(f"deployment {deployment_name} carries traffic", code="DeploymentHasTraffic")
        del ep.deployments[deployment_name]
        ep.deployment_runs.pop(deployment_name, None)
        ep.served.pop(deployment_name, None)
        self.deleted_deployments.append(f"{endpoint_name}/{deployment_name}")

    def list_endpoints(self) -> list[EndpointInfo]:
        self._maybe_fail("list_endpoints")
        return [
            EndpointInfo(ep.name, dict(ep.tags), ep.created_at, f"https://{ep.name}.example/score", healthy=ep.healthy)
            for ep in self.endpoints.values()
            if is_managed(ep.tags)
        ]

    def endpoint_activity(self, endpoint_name: str, since: datetime) -> EndpointActivity:
        ep = self.endpoints[endpoint_name]
        if ep.metrics_missing:
            return EndpointActivity(None, 0, known=False)
        last = ep.last_request_at if ep.last_request_at and ep.last_request_at >= since else None
        return EndpointActivity(last, ep.requests if last else 0)

    def endpoints_activity(self, endpoint_names: Sequence[str], since: datetime) -> dict[str, EndpointActivity]:
        self._maybe_fail("endpoints_activity")
        self.activity_calls += 1
        return {name: self.endpoint_activity(name, since) for name in endpoint_names}

    def begin_delete_endpoint(self, endpoint_name: str) -> None:
        ep = self.endpoints.get(endpoint_name)
        if ep is None:
            return
        if not is_managed(ep.tags):
            raise NotManagedError(f"endpoint {endpoint_name} is not managed by the app")
        del self.endpoints[endpoint_name]
        self.deleted_endpoints.append(endpoint_name)


def make_store(
    clock: FakeClock | None = None,
    observers: Sequence[Callable[[RunRecord], None]] = (),
    owe: Callable[[RunRecord], bool] | None = None,
) -> tuple[RunStore, InMemoryLedger, InMemoryStatusStore]:
    ledger, status = InMemoryLedger(), InMemoryStatusStore()
    return RunStore(ledger, status, clock or FakeClock(), observers, owe=owe), ledger, status


def transient(message: str = "throttled") -> TransientPlatformError:
    return TransientPlatformError(message, code="429")


__all__ = [
    "FakeClock",
    "FakePlatform",
    "InMemoryLedger",
    "InMemoryStatusStore",
    "make_store",
    "replace",
    "transient",
]


class WorkerDied(BaseException):
    """The worker died: not an Exception, so nothing in the app catches it on the way up."""


def die_entering(
    monkeypatch: Any, state: RunState, *, error: BaseException | None = None, times: int | None = None
) -> list[str]:
    """Make the ledger write that enters ``state`` blow up, after the side effect before it has happened.

    ``times`` limits how often (None: every time). Returns the run ids it killed, for assertions.
    """
    real_advance = RunStore.advance
    killed: list[str] = []

    def advance(self: RunStore, run_id: str, target: RunState, mutate: Any = None) -> Any:
        if target == state and (times is None or len(killed) < times):
            killed.append(run_id)
            raise error if error is not None else WorkerDied()
        return real_advance(self, run_id, target, mutate)

    monkeypatch.setattr(RunStore, "advance", advance)
    return killed


class InMemoryFollowUps:
    """``FollowUps`` in memory, with the port's marks: what was sent, each with the time it becomes due.

    ``deliver_due()`` hands out (and removes) the messages due by the clock, as the queue trigger would; tests
    lose a message by not delivering it (``lose_all``) and duplicate one by delivering it twice."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.pending: list[tuple[datetime, Any]] = []  # (due, FollowUp)
        self.sent: list[Any] = []  # every FollowUp ever sent, in order
        self._marks: dict[tuple[str, str], tuple[str, int]] = {}

    def schedule(self, follow_up: Any, delay: timedelta) -> bool:
        from shared.followups import capped

        key = (follow_up.run_id, follow_up.kind.value)
        mark = self._marks.get(key)
        if mark is not None:
            watch, attempt = mark
            if watch == follow_up.watch and attempt >= follow_up.attempt:
                return False
            if watch != follow_up.watch and watch.rpartition("@")[2] > follow_up.watch.rpartition("@")[2]:
                return False
        self._marks[key] = (follow_up.watch, follow_up.attempt)
        self.pending.append((self.clock() + capped(delay), follow_up))
        self.sent.append(follow_up)
        return True

    def next_due(self) -> datetime | None:
        return min((due for due, _ in self.pending), default=None)

    def deliver_due(self) -> list[Any]:
        now = self.clock()
        due = sorted((p for p in self.pending if p[0] <= now), key=lambda p: p[0])
        self.pending = [p for p in self.pending if p[0] > now]
        return [f for _, f in due]

    def lose_all(self) -> None:
        self.pending.clear()
