"""Azure's own faults through the real SDK: the replayed recordings (tests/fixtures/azureml/recordings/) with
injected answers (``faults.py``): Resource Manager's 429 with ``Retry-After`` and its 503, a long-running
operation that ends ``Failed`` or never ends, a scoring route's error pages, Azure Monitor's 503. Per adapter
call, what the app does: retried within the call's bounded wait (``retries.BoundedRetryPolicy``), or a
``TransientPlatformError`` the next event or sweep retries, or a failure with its code; never a second job,
model or endpoint. docs/azure-faults.md tabulates the outcomes; Azure Table's faults are in
tests/integration/test_table_faults.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.exceptions import PlatformError, TransientPlatformError
from shared.ledger.parts import SmokeTest
from shared.ledger.record import RunRecord
from shared.naming import app_tags
from shared.platform.azureml.monitor import MetricsQuery, query_activity
from shared.platform.azureml.retries import MAX_WAIT_S, TOTAL_WAIT_S, sdk_options
from shared.platform.port import DeploymentState, JobStatus
from shared.runs import RunStore
from shared.services.reconcile import reconcile, sweep_runs
from shared.settings import Settings
from shared.states import RunState
from tests.fakes import FakeClock, make_store
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.azure_fakes import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE
from tests.unit.shared.azureml.faults import (
    as_read,
    injected,
    listed_keys,
    operation,
    scored,
    throttled,
    unavailable,
)
from tests.unit.shared.azureml.replay import (
    ReplayCredential,
    ReplayTransport,
    by_label,
    load,
    replay_platform,
    take,
    workspace_renames,
)
from tests.unit.shared.azureml.test_monitor import ENDPOINT_ID, metrics_answer
from tests.unit.shared.azureml.test_replayed_deploy import (
    DEPLOYMENT,
    DEPLOYMENT_PATH,
    ENDPOINT,
    ENDPOINT_PATH,
    deploy_request,
    missing,
    recorded,
)
from tests.unit.shared.azureml.test_replayed_jobs_and_models import (
    MODEL_NAME,
    RENAMES,
    VERSION_PATH,
    WORKSPACE_PATH,
    job_request,
    platform_with_registry,
    recorded_model,
    register_request,
)

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

RUN = "phi4-ultrachat-1a2b3c4d"
JOB_PATH = f"{WORKSPACE_PATH}/jobs/{RUN}"
DEPLOY_TIMEOUT = timedelta(minutes=60)


def jobs() -> dict[str, dict[str, Any]]:
    tags = app_tags(RUN, "phi4-ultrachat.yaml")
    return by_label(load("pipeline_job_get.json", {**RENAMES, "test_680454434153": RUN}, tags=tags))


def workspace_read() -> dict[str, Any]:
    return take(by_label(load("online_endpoint_e2e.json", RENAMES)), "workspace")[0]


def sent(transport: ReplayTransport, method: str) -> list[str]:
    return [s.path for s in transport.sent if s.method == method]


def store_with(state: RunState, clock: FakeClock, **fields: Any) -> tuple[RunStore, str]:
    """A store holding one run of the seed's config in ``state``, with ``fields`` set."""
    store, _, _ = make_store(clock)
    store.create(
        RUN,
        config_blob="phi4-ultrachat.yaml",
        config_name="phi4-ultrachat",
        content=b"x",
        config_etag=None,
        platform="azureml",
    )

    def fill(r: RunRecord) -> None:
        for key, value in fields.items():
            setattr(r, key, value)

    path = {
        RunState.SUBMITTED: [RunState.SUBMITTED],
        RunState.DEPLOYING: [RunState.SUBMITTED, RunState.COMPLETED, RunState.REGISTERED, RunState.DEPLOYING],
    }
    for step in path[state]:
        store.advance(RUN, step, fill)
    return store, RUN


def runs_step(store: RunStore, platform: Any) -> Any:
    """One reconcile invocation's runs step (the orphan step lists what no recording holds)."""
    return reconcile(store, platform, deploy_timeout=DEPLOY_TIMEOUT, sweeps=(sweep_runs,))


# -- jobs.get (reconcile's look at a submitted run) -----------------------------------------------------------
def test_a_brief_throttle_on_reading_a_job_is_waited_out_within_the_call(settings: Settings) -> None:
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    transport.queue(throttled("GET", JOB_PATH, retry_after=5), *take(jobs(), "job-running"), workspace_read())
    assert platform.get_job(RUN).status == JobStatus.RUNNING
    assert transport.slept == [5.0]  # what Resource Manager asked, once


def test_a_long_throttle_is_not_waited_for_and_the_next_sweep_reads_the_job(settings: Settings) -> None:
    clock = FakeClock()
    store, run = store_with(RunState.SUBMITTED, clock, job_name=RUN)
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    transport.queue(throttled("GET", JOB_PATH, retry_after=3600))

    [outcome] = runs_step(store, platform).outcomes

    assert transport.slept == []  # an hour inside a 240 s sweep would hold every other run
    assert outcome.after == "submitted" and "retry after 3600 s" in (outcome.error or "")
    assert store.get(run).state == RunState.SUBMITTED  # type: ignore[union-attr]
    transport.queue(*take(jobs(), "job-running"), workspace_read())
    runs_step(store, platform)
    assert store.get(run).state == RunState.RUNNING  # type: ignore[union-attr]


def test_an_unavailable_job_read_waits_a_bounded_time_then_is_left_to_the_next_sweep(settings: Settings) -> None:
    clock = FakeClock()
    store, run = store_with(RunState.SUBMITTED, clock, job_name=RUN)
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    transport.queue(*[unavailable("GET", JOB_PATH) for _ in range(4)])  # the first try and the SDK's 3 retries

    [outcome] = runs_step(store, platform).outcomes

    assert len(sent(transport, "GET")) == 4 and sum(transport.slept) <= TOTAL_WAIT_S
    assert outcome.error is not None and "TransientPlatformError" in outcome.error
    assert store.get(run).state == RunState.SUBMITTED  # type: ignore[union-attr]


# -- jobs.create_or_update (submit) -----------------------------------------------------------------------
def test_a_submit_answered_503_then_created_puts_one_job_under_the_runs_name(settings: Settings) -> None:
    request = job_request(settings)
    job = by_label(
        load("pipeline_job_create.json", {**RENAMES, "test_722826276578": request.name}, tags=dict(request.tags))
    )
    transport = ReplayTransport()
    platform = platform_with_registry(transport, settings)
    transport.queue(workspace_read(), unavailable("PUT", JOB_PATH), *take(job, "job-put-created"))

    info = platform.submit_job(request)

    assert info.name == RUN and info.status == JobStatus.NOT_STARTED
    assert sent(transport, "PUT") == [JOB_PATH, JOB_PATH]  # retried: the same name, so never a second job


def test_a_submit_throttled_for_long_is_a_transient_error_the_blob_trigger_retries(settings: Settings) -> None:
    request = job_request(settings)
    transport = ReplayTransport()
    platform = platform_with_registry(transport, settings)
    transport.queue(workspace_read(), throttled("PUT", JOB_PATH, retry_after=120))
    with pytest.raises(TransientPlatformError, match="retry after 120 s"):
        platform.submit_job(request)
    assert transport.slept == [] and sent(transport, "PUT") == [JOB_PATH]


# -- models.create_or_update (register) -------------------------------------------------------------------
def test_a_registration_whose_answers_were_lost_finds_the_version_it_made(settings: Settings) -> None:
    request = register_request()
    model = recorded_model(request.tags)
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    transport.queue(missing("GET", VERSION_PATH), *take(model, "model-versions-not-found"))
    transport.queue(*[unavailable("PUT", VERSION_PATH) for _ in range(4)])  # the PUT landed; its answers did not
    transport.queue(*take(model, "model-version"))  # the look after the failure finds it

    ref = platform.register_model(request)

    assert (ref.name, ref.version) == (MODEL_NAME, "3")
    assert set(sent(transport, "PUT")) == {VERSION_PATH}  # one version, however often it was asked for


# -- online deployments: their long-running operations -------------------------------------------------------
def start_deployment(transport: ReplayTransport, rec: dict[str, dict[str, Any]], *polls: dict[str, Any]) -> None:
    transport.queue(*take(rec, "endpoint-succeeded", "deployments-none"), missing("GET", DEPLOYMENT_PATH))
    transport.queue(*take(rec, "endpoint-succeeded-2023", "workspace", "deployment-put-created"), *polls)


def test_an_operation_that_ends_failed_is_a_failed_deployment_with_its_code_and_remedy(settings: Settings) -> None:
    rec = recorded()
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    error = {"code": "OutOfQuota", "message": "Not enough quota available for Standard_NC24ads_A100_v4."}
    updating = take(rec, "deployment-operation-updating")[0]
    start_deployment(transport, rec, updating, operation(updating, "Failed", error))
    platform.begin_deploy(deploy_request())
    with pytest.raises(Exception, match="OutOfQuota"):
        platform._deployments._pollers[("deployment", ENDPOINT, DEPLOYMENT)].result()  # the SDK's poller ended

    transport.queue(
        *take(rec, "endpoint-succeeded", "deployments-of-endpoint"), as_read(rec["deployment-succeeded"], "Failed")
    )
    info = platform.get_deployment(ENDPOINT, DEPLOYMENT)

    assert info.state == DeploymentState.FAILED and info.error_code == "OutOfQuota"
    assert info.error_message is not None and "remedy: request more quota" in info.error_message


def test_an_operation_that_never_ends_is_read_as_creating_without_waiting_on_it(settings: Settings) -> None:
    rec = recorded()
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    updating = take(rec, "deployment-operation-updating")[0]
    start_deployment(transport, rec, updating)  # the operation reports Updating, and then nothing more
    platform.begin_deploy(deploy_request())

    transport.queue(
        *take(rec, "endpoint-succeeded", "deployments-of-endpoint"), as_read(rec["deployment-succeeded"], "Creating")
    )
    assert platform.get_deployment(ENDPOINT, DEPLOYMENT).state == DeploymentState.CREATING


def test_a_deployment_whose_operation_never_ends_fails_at_the_apps_deadline(settings: Settings) -> None:
    rec = recorded()
    clock = FakeClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
    store, run = store_with(RunState.DEPLOYING, clock, endpoint_name=ENDPOINT, deployment_name=DEPLOYMENT, job_name=RUN)
    clock.advance(minutes=61)
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    delete = answer_delete()
    transport.queue(
        *take(rec, "endpoint-succeeded", "deployments-of-endpoint"), as_read(rec["deployment-succeeded"], "Updating")
    )
    transport.queue(*take(rec, "endpoint-succeeded", "deployments-of-endpoint"), delete)

    runs_step(store, platform)

    record = store.get(run)
    assert record is not None and record.state == RunState.DEPLOY_FAILED
    assert (
        record.last_error_code == "DeploymentTimeout" and "still Updating after 60 minutes" in record.errors[0].message
    )
    assert sent(transport, "DELETE") == [ENDPOINT_PATH]  # on the platform's own answer (Updating), never a guess


def answer_delete() -> dict[str, Any]:
    e2e = by_label(
        load(
            "online_endpoint_e2e.json",
            {**workspace_renames(SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE), "online-ept-6696557f8dec409": ENDPOINT},
        )
    )
    return take(e2e, "endpoint-delete-accepted")[0]


# -- online_endpoints.begin_create_or_update (traffic) ------------------------------------------------------
def test_a_traffic_update_throttled_for_long_is_left_to_the_next_look(settings: Settings) -> None:
    rec = recorded()
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    transport.queue(*take(rec, "endpoint-succeeded", "deployments-of-endpoint", "workspace"))
    transport.queue(throttled("PUT", ENDPOINT_PATH, retry_after=90))
    with pytest.raises(TransientPlatformError, match="retry after 90 s"):
        platform.set_traffic(ENDPOINT, {DEPLOYMENT: 100})
    assert transport.slept == []


# -- online_endpoints.invoke (the smoke test) ---------------------------------------------------------------
def scoring_answers(rec: dict[str, dict[str, Any]], *answers: dict[str, Any]) -> list[dict[str, Any]]:
    return [*take(rec, "deployments-of-endpoint", "endpoint-with-traffic"), listed_keys(ENDPOINT_PATH), *answers]


def scoring_uri(rec: dict[str, dict[str, Any]]) -> str:
    return str(rec["endpoint-with-traffic"]["ResponseBody"]["properties"]["scoringUri"])


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, "upstream connect error or disconnect/reset before headers"),  # a gateway's text page
        (503, {"message": "Service Unavailable"}),
        (429, {"message": "Too many pending requests"}),
    ],
    ids=["503-text", "503-json", "429-json"],
)
def test_a_scoring_answer_that_may_pass_is_transient_never_a_broken_deployment(
    settings: Settings, status: int, body: Any
) -> None:
    rec = recorded()
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    transport.queue(*scoring_answers(rec, *[scored(scoring_uri(rec), status, body) for _ in range(4)]))
    with pytest.raises(TransientPlatformError):
        platform.invoke(ENDPOINT, DEPLOYMENT, {"input_data": {"input_string": []}})
    assert sum(transport.slept) <= TOTAL_WAIT_S and all(wait <= MAX_WAIT_S for wait in transport.slept)


def test_a_scoring_script_error_is_a_failure_of_the_deployment(settings: Settings) -> None:
    rec = recorded()
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    answer = scored(scoring_uri(rec), 424, {"message": "An unexpected error occurred in scoring script."})
    transport.queue(*scoring_answers(rec, answer))
    with pytest.raises(PlatformError, match="unexpected error occurred in scoring script") as exc:
        platform.invoke(ENDPOINT, DEPLOYMENT, {"input_data": {"input_string": []}})
    assert not isinstance(exc.value, TransientPlatformError)


def test_a_smoke_test_behind_a_503_page_keeps_the_endpoint_and_deploys_on_the_next_look(settings: Settings) -> None:
    rec = recorded()
    clock = FakeClock()
    smoke = SmokeTest({"input_data": {"input_string": [{"role": "user", "content": "Pack for a hike?"}]}})
    store, run = store_with(
        RunState.DEPLOYING, clock, endpoint_name=ENDPOINT, deployment_name=DEPLOYMENT, job_name=RUN, smoke_test=smoke
    )
    transport = ReplayTransport()
    platform = replay_platform(transport, settings)
    page = scored(scoring_uri(rec), 503, "upstream connect error or disconnect/reset before headers")
    # A look: the deployment's state, the traffic (already there: read only), then the smoke request.
    ready = take(rec, "endpoint-with-traffic", "deployments-of-endpoint", "deployment-succeeded")
    ready += take(rec, "endpoint-with-traffic", "deployments-of-endpoint")
    transport.queue(*ready, *scoring_answers(rec, *[dict(page) for _ in range(4)]))
    # What a deletion of the endpoint would be answered (it must not come to that).
    transport.queue(*take(rec, "endpoint-with-traffic", "deployments-of-endpoint"), answer_delete())

    runs_step(store, platform)

    assert store.get(run).state == RunState.DEPLOYING  # type: ignore[union-attr]
    assert sent(transport, "DELETE") == []  # a gateway's 503 page is no evidence against the deployment
    transport.queue(*ready, *scoring_answers(rec, scored(scoring_uri(rec), 200, [{"0": "Pack layers and water."}])))
    runs_step(store, platform)
    record = store.get(run)
    assert record is not None and record.state == RunState.DEPLOYED
    assert record.smoke_test is not None and record.smoke_test.answer == "Pack layers and water."
    assert sent(transport, "DELETE") == []


# -- Azure Monitor (the idle check and the canary's error rates) --------------------------------------------
def monitor(transport: ReplayTransport) -> Any:
    from azure.monitor.querymetrics import MetricsClient

    from shared.platform.azureml.clients import metrics_endpoint

    return MetricsClient(metrics_endpoint("eastus"), ReplayCredential(), transport=transport, **sdk_options())


BATCH_PATH = f"/subscriptions/{SUBSCRIPTION}/metrics:getBatch"
MONITOR_HOST = "https://eastus.metrics.monitor.azure.com"
SINCE = datetime(2026, 11, 1, 11, 0, tzinfo=UTC)


def test_monitor_unavailable_is_waited_out_briefly_then_answered(settings: Settings) -> None:
    transport = ReplayTransport()
    answer = injected("POST", BATCH_PATH, 200, code="", message="", host=MONITOR_HOST)
    answer["ResponseBody"] = metrics_answer([("2026-11-01T11:30:00Z", 3.0)])
    transport.queue(unavailable("POST", BATCH_PATH, host=MONITOR_HOST), answer)
    found = query_activity(monitor(transport), MetricsQuery((ENDPOINT_ID,), SINCE, SINCE + timedelta(hours=1)))
    assert found[ENDPOINT_ID].request_count == 3 and len(sent(transport, "POST")) == 2


def test_monitor_down_is_a_transient_error_never_an_idle_endpoint(settings: Settings) -> None:
    transport = ReplayTransport()
    transport.queue(*[unavailable("POST", BATCH_PATH, host=MONITOR_HOST) for _ in range(4)])
    with pytest.raises(TransientPlatformError, match="RequestsPerMinute"):
        query_activity(monitor(transport), MetricsQuery((ENDPOINT_ID,), SINCE, SINCE + timedelta(hours=1)))
    assert sum(transport.slept) <= TOTAL_WAIT_S


def test_monitor_refusing_the_identity_is_a_platform_error_not_retried(settings: Settings) -> None:
    transport = ReplayTransport()
    refusal = injected(
        "POST",
        BATCH_PATH,
        403,
        code="AuthorizationFailed",
        message="The client does not have authorization to perform action 'Microsoft.Insights/metrics/read'.",
        host=MONITOR_HOST,
    )
    transport.queue(refusal)
    with pytest.raises(PlatformError, match="AuthorizationFailed") as exc:
        query_activity(monitor(transport), MetricsQuery((ENDPOINT_ID,), SINCE, SINCE + timedelta(hours=1)))
    assert not isinstance(exc.value, TransientPlatformError) and len(sent(transport, "POST")) == 1


def retry_policies(operations: Any) -> set[str]:
    """The retry policies in the pipelines of an SDK operations object's service clients."""
    found = set()
    for value in vars(operations).values():
        pipeline = getattr(getattr(value, "_client", None), "_pipeline", None)
        found |= {type(p).__name__ for p in getattr(pipeline, "_impl_policies", []) if "Retry" in type(p).__name__}
    return found


def test_the_app_builds_its_clients_with_the_bounded_retry_policy(settings: Settings) -> None:
    from shared.platform.azureml.clients import AzureClients

    clients = AzureClients(settings, credential=ReplayCredential())  # type: ignore[arg-type]
    workspace = clients.workspace
    for name in ("jobs", "models", "online_endpoints", "online_deployments", "workspaces", "compute"):
        assert retry_policies(getattr(workspace, name)) == {"BoundedRetryPolicy"}, name
    scoring = {type(p).__name__ for p in workspace.online_endpoints._requests_pipeline._impl_policies}
    assert "BoundedRetryPolicy" in scoring and "RetryPolicy" not in scoring  # the smoke test's requests
    metrics = {type(p).__name__ for p in clients.metrics("eastus")._client._pipeline._impl_policies}
    assert "BoundedRetryPolicy" in metrics and "RetryPolicy" not in metrics
