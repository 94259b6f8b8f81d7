"""Idle activity: the real ``MetricsClient`` builds its request into a fake transport; a canned answer
becomes the endpoint's last request time."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._requests_basic import RestRequestsTransportResponse

from shared.naming import app_tags
from shared.platform.azureml.monitor import METRIC_NAMESPACE, MetricsQuery, query_activity
from shared.settings import Settings
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.azure_fakes import WORKSPACE_ID, FakeWorkspace
from tests.unit.shared.azureml.support import make_platform

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

ENDPOINT_ID = f"{WORKSPACE_ID}/onlineEndpoints/ft-phi3-ultrachat-1a2b3c4d"
SINCE = datetime(2026, 11, 1, 11, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class FakeCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("test-token", int(time.time()) + 3600)


class CannedTransport(HttpTransport):
    """Answers every request with one JSON body and keeps the requests."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.requests: list[Any] = []

    def __enter__(self) -> CannedTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.requests.append(request)
        raw = requests.Response()
        raw.status_code = 200
        raw.headers["Content-Type"] = "application/json"
        raw.raw = io.BytesIO(json.dumps(self.body).encode())
        raw.url = request.url
        return RestRequestsTransportResponse(request=request, internal_response=raw)


def metrics_answer(points: list[tuple[str, float | None]]) -> dict[str, Any]:
    """The shape of a metrics:getBatch answer for one resource and one metric."""
    data = [{"timeStamp": stamp, **({"total": total} if total is not None else {})} for stamp, total in points]
    return {
        "values": [
            {
                "starttime": SINCE.isoformat(),
                "endtime": NOW.isoformat(),
                "interval": "PT1M",
                "namespace": METRIC_NAMESPACE,
                "resourceregion": "eastus",
                "resourceid": ENDPOINT_ID,
                "value": [
                    {
                        "id": f"{ENDPOINT_ID}/providers/Microsoft.Insights/metrics/RequestsPerMinute",
                        "type": "Microsoft.Insights/metrics",
                        "name": {"value": "RequestsPerMinute", "localizedValue": "Requests Per Minute"},
                        "displayDescription": "The number of requests sent to the online endpoint",
                        "unit": "Count",
                        "errorCode": "Success",
                        "timeseries": [{"metadatavalues": [], "data": data}],
                    }
                ],
            }
        ]
    }


def client_with(body: dict[str, Any], region: str = "eastus") -> tuple[Any, CannedTransport]:
    from azure.monitor.querymetrics import MetricsClient

    from shared.platform.azureml.clients import metrics_endpoint

    transport = CannedTransport(body)
    return MetricsClient(metrics_endpoint(region), FakeCredential(), transport=transport), transport


def test_the_request_asks_for_requests_per_minute_totals_over_the_window() -> None:
    client, transport = client_with(metrics_answer([]))
    query_activity(client, MetricsQuery((ENDPOINT_ID,), SINCE, NOW))
    [request] = transport.requests
    url = urlsplit(request.url)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert request.method == "POST"
    assert url.netloc == "eastus.metrics.monitor.azure.com"
    assert url.path == "/subscriptions/00000000-0000-0000-0000-000000000000/metrics:getBatch"
    assert query["metricnames"] == "RequestsPerMinute"
    assert query["metricnamespace"] == "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
    assert query["interval"] == "PT1M"
    assert query["aggregation"] == "Average,Total"
    assert query["starttime"] == "2026-11-01T11:00:00.000Z"
    assert query["endtime"] == "2026-11-01T12:00:00.000Z"
    assert json.loads(request.content) == {"resourceids": [ENDPOINT_ID]}
    assert request.headers["Authorization"] == "Bearer test-token"


def test_the_last_minute_with_requests_is_the_last_activity() -> None:
    client, _ = client_with(
        metrics_answer(
            [
                ("2026-11-01T11:05:00Z", 2.0),
                ("2026-11-01T11:06:00Z", 0.0),
                ("2026-11-01T11:41:00Z", 5.0),
                ("2026-11-01T11:42:00Z", 0.0),
                ("2026-11-01T11:43:00Z", None),  # no data in that minute
            ]
        )
    )
    activity = query_activity(client, MetricsQuery((ENDPOINT_ID,), SINCE, NOW))[ENDPOINT_ID]
    assert activity.last_request_at == datetime(2026, 11, 1, 11, 41, tzinfo=UTC)
    assert activity.request_count == 7


def test_no_requests_means_no_last_activity() -> None:
    client, _ = client_with(metrics_answer([("2026-11-01T11:05:00Z", 0.0)]))
    activity = query_activity(client, MetricsQuery((ENDPOINT_ID,), SINCE, NOW))[ENDPOINT_ID]
    assert (activity.last_request_at, activity.request_count) == (None, 0)


def test_the_adapter_queries_the_endpoint_in_its_region(settings: Settings, workspace: FakeWorkspace) -> None:
    from shared.platform.azureml.adapter import AzureMLPlatform
    from shared.platform.port import DeployRequest, ModelRef

    body = metrics_answer([("2026-11-01T11:30:00Z", 1.0)])
    regions: list[str] = []
    transports: list[CannedTransport] = []

    def metrics(region: str) -> Any:
        regions.append(region)
        client, transport = client_with(body, region)
        transports.append(transport)
        return client

    platform: AzureMLPlatform = make_platform(settings, workspace, metrics=metrics)
    platform._clock = lambda: NOW
    platform.begin_deploy(
        DeployRequest(
            "ft-phi3-ultrachat-1a2b3c4d",
            "d-1a2b3c4d",
            ModelRef("m", "1", "azureml:m:1"),
            "Standard_NC24ads_A100_v4",
            1,
            90_000,
            600,
            1,
            "endpoint",
            app_tags("phi3-ultrachat-1a2b3c4d", "phi3-ultrachat.yaml"),
        )
    )
    activity = platform.endpoint_activity("ft-phi3-ultrachat-1a2b3c4d", since=NOW - timedelta(minutes=60))
    assert regions == ["eastus"]
    assert json.loads(transports[0].requests[0].content) == {"resourceids": [ENDPOINT_ID]}
    assert activity.last_request_at == datetime(2026, 11, 1, 11, 30, tzinfo=UTC)


def batch_answer(resources: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A metrics:getBatch answer with one entry per resource, each with its own data points."""
    values = []
    for rid, data in resources.items():
        one = metrics_answer([])["values"][0]
        one["resourceid"] = rid
        one["value"][0]["id"] = f"{rid}/providers/Microsoft.Insights/metrics/RequestsPerMinute"
        one["value"][0]["timeseries"] = [{"metadatavalues": [], "data": data}] if data else []
        values.append(one)
    return {"values": values}


def test_a_minute_with_only_an_average_above_zero_is_activity() -> None:
    client, _ = client_with(batch_answer({ENDPOINT_ID: [{"timeStamp": "2026-11-01T11:50:00Z", "average": 0.5}]}))
    activity = query_activity(client, MetricsQuery((ENDPOINT_ID,), SINCE, NOW))[ENDPOINT_ID]
    assert activity.known and activity.last_request_at == datetime(2026, 11, 1, 11, 50, tzinfo=UTC)
    assert activity.request_count >= 1


def test_no_data_is_unknown_never_idle() -> None:
    other = f"{WORKSPACE_ID}/onlineEndpoints/ft-other-00000000"
    missing = f"{WORKSPACE_ID}/onlineEndpoints/ft-missing-00000000"
    client, transport = client_with(
        batch_answer(
            {
                ENDPOINT_ID: [{"timeStamp": "2026-11-01T11:05:00Z"}],  # a minute with no value
                other: [],  # no series at all
            }
        )
    )
    found = query_activity(client, MetricsQuery((ENDPOINT_ID, other, missing), SINCE, NOW))
    assert [found[r].known for r in (ENDPOINT_ID, other, missing)] == [False, False, False]
    assert len(transport.requests) == 1


def test_many_endpoints_are_asked_for_fifty_per_call_and_answers_map_back_by_resource() -> None:
    ids = [f"{WORKSPACE_ID}/onlineEndpoints/ft-e{i:03d}-00000000" for i in range(120)]
    busy = ids[75]
    answer = batch_answer(
        {rid: [{"timeStamp": "2026-11-01T11:30:00Z", "total": 3.0 if rid == busy else 0.0}] for rid in ids}
    )
    client, transport = client_with(answer)
    found = query_activity(client, MetricsQuery(tuple(ids), SINCE, NOW))
    assert [len(json.loads(r.content)["resourceids"]) for r in transport.requests] == [50, 50, 20]
    assert found[busy].request_count == 3 and found[busy].last_request_at is not None
    assert all(found[r].known and found[r].last_request_at is None for r in ids if r != busy)


def split_answer(series: list[tuple[str, str, float]]) -> dict[str, Any]:
    """A metrics:getBatch answer for RequestsPerMinute split by deployment and statusCode, one series each."""
    body = metrics_answer([])
    body["values"][0]["value"][0]["timeseries"] = [
        {
            "metadatavalues": [
                {"name": {"value": "deployment", "localizedValue": "deployment"}, "value": deployment},
                {"name": {"value": "statusCode", "localizedValue": "statusCode"}, "value": code},
            ],
            "data": [{"timeStamp": "2026-11-01T11:30:00Z", "total": total}],
        }
        for deployment, code, total in series
    ]
    return body


def test_per_deployment_errors_come_from_the_split_by_deployment_and_status_code() -> None:
    from shared.platform.azureml.monitor import query_deployment_metrics

    client, transport = client_with(
        split_answer([("d-new", "200", 18.0), ("d-new", "500", 2.0), ("d-old", "200", 170.0), ("d-old", "404", 5.0)])
    )
    found = query_deployment_metrics(client, ENDPOINT_ID, SINCE, NOW)
    [request] = transport.requests
    query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
    assert query["filter"] == "deployment eq '*' and statusCode eq '*'"
    assert query["metricnames"] == "RequestsPerMinute"
    assert (found["d-new"].requests, found["d-new"].errors) == (20, 2)
    assert (found["d-old"].requests, found["d-old"].errors) == (175, 0)  # a 4xx is the caller's error


def test_a_model_error_424_counts_against_the_deployment_as_a_5xx_does() -> None:
    """Azure answers 424 when the model container failed (a crashing scoring script): the canary's evidence."""
    from shared.platform.azureml.monitor import query_deployment_metrics

    client, _ = client_with(
        split_answer([("d-new", "200", 10.0), ("d-new", "424", 6.0), ("d-old", "200", 90.0), ("d-old", "429", 4.0)])
    )
    found = query_deployment_metrics(client, ENDPOINT_ID, SINCE, NOW)
    assert (found["d-new"].requests, found["d-new"].errors) == (16, 6)
    assert (found["d-old"].requests, found["d-old"].errors) == (94, 0)  # throttled is not the model's fault


class RefusingTotal(CannedTransport):
    """A metrics API that refuses any query naming ``Total`` with ``status`` (as it may for an aggregation the
    metric does not support; the body is the ARM error shape) and answers the others with ``body``."""

    def __init__(self, body: dict[str, Any], status: int = 400) -> None:
        super().__init__(body)
        self.status = status

    def send(self, request: Any, **kwargs: Any) -> Any:
        aggregation = parse_qs(urlsplit(request.url).query).get("aggregation", [""])[0]
        if "Total" not in aggregation.split(","):
            return super().send(request, **kwargs)
        self.requests.append(request)
        raw = requests.Response()
        raw.status_code = self.status
        raw.headers["Content-Type"] = "application/json"
        error = {"error": {"code": "BadRequest", "message": "Aggregation 'Total' is not supported for this metric"}}
        raw.raw = io.BytesIO(json.dumps(error).encode())
        raw.url = request.url
        return RestRequestsTransportResponse(request=request, internal_response=raw)


def refusing_client(body: dict[str, Any], status: int = 400) -> tuple[Any, RefusingTotal]:
    from azure.monitor.querymetrics import MetricsClient

    from shared.platform.azureml.clients import metrics_endpoint

    transport = RefusingTotal(body, status)
    # No azure-core retries (it would ask three more times on a 500 first, with its backoff): one refusal each.
    client = MetricsClient(metrics_endpoint("eastus"), FakeCredential(), transport=transport, retry_total=0)
    return client, transport


def aggregations_asked(transport: CannedTransport) -> list[str]:
    return [parse_qs(urlsplit(r.url).query)["aggregation"][0] for r in transport.requests]


@pytest.mark.parametrize("status", [400, 500, 501])
def test_a_refused_total_is_asked_again_with_the_documented_average_so_idleness_stays_known(status: int) -> None:
    idle, busy = ENDPOINT_ID, f"{WORKSPACE_ID}/onlineEndpoints/ft-busy-00000000"
    answer = batch_answer(
        {
            idle: [{"timeStamp": "2026-11-01T11:05:00Z", "average": 0.0}],
            busy: [{"timeStamp": "2026-11-01T11:50:00Z", "average": 3.0}],
        }
    )
    client, transport = refusing_client(answer, status)
    found = query_activity(client, MetricsQuery((idle, busy), SINCE, NOW))
    assert aggregations_asked(transport) == ["Average,Total", "Average"]
    assert found[idle].known and found[idle].last_request_at is None  # idle, and known to be: it can be deleted
    assert found[busy].last_request_at == datetime(2026, 11, 1, 11, 50, tzinfo=UTC)


def test_a_refusal_that_is_not_about_the_query_is_not_asked_again() -> None:
    from shared.exceptions import PlatformError

    client, transport = refusing_client(metrics_answer([]), status=403)
    with pytest.raises(PlatformError, match="reading RequestsPerMinute of ft-phi3-ultrachat-1a2b3c4d"):
        query_activity(client, MetricsQuery((ENDPOINT_ID,), SINCE, NOW))
    assert aggregations_asked(transport) == ["Average,Total"]


def test_the_per_deployment_split_asks_for_every_series_not_the_default_ten() -> None:
    from shared.platform.azureml.monitor import MAX_SERIES, query_deployment_metrics

    # Two deployments, each answering with six status codes: 12 series, the 5xx ones last.
    codes = ("200", "201", "204", "400", "404", "500")
    series = [(d, code, 10.0) for d in ("d-old", "d-new") for code in codes]
    client, transport = client_with(split_answer(series))
    found = query_deployment_metrics(client, ENDPOINT_ID, SINCE, NOW)
    [request] = transport.requests
    assert parse_qs(urlsplit(request.url).query)["top"] == [str(MAX_SERIES)]
    assert MAX_SERIES >= 20 * 12  # Azure ML's 20 deployments per endpoint, a dozen status codes each
    assert (found["d-new"].requests, found["d-new"].errors) == (60, 10)


def test_the_per_deployment_split_survives_a_refused_total_too() -> None:
    from shared.platform.azureml.monitor import query_deployment_metrics

    body = split_answer([("d-new", "200", 0.0), ("d-new", "503", 0.0)])
    for series, average in zip(body["values"][0]["value"][0]["timeseries"], (9.0, 1.0), strict=True):
        series["data"] = [{"timeStamp": "2026-11-01T11:30:00Z", "average": average}]
    client, transport = refusing_client(body)
    found = query_deployment_metrics(client, ENDPOINT_ID, SINCE, NOW)
    assert aggregations_asked(transport) == ["Average,Total", "Average"]
    assert (found["d-new"].requests, found["d-new"].errors) == (10, 1)
