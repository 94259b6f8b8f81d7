"""Endpoint activity for the idle check: Azure Monitor's ``RequestsPerMinute`` metric of the endpoints.

azure-monitor-query 2.0 has no metrics client any more (its README: "MetricsClient and MetricsQueryClient
have been removed ... use azure-monitor-querymetrics"). The successor, ``azure.monitor.querymetrics``
``MetricsClient``, calls the regional batch API (``metrics:getBatch``) with ``query_resources``: many resource
ids of one subscription and region per call (at most ``MAX_RESOURCES_PER_CALL``).

The idle check fails safe. ``RequestsPerMinute`` is documented with the ``Average`` aggregation only (Azure
Monitor's "Supported metrics for Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
https://learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/microsoft-machinelearningservices-workspaces-onlineendpoints-metrics);
the app asks for ``Total`` too, which counts requests where the service gives it, and a minute with either one
above zero is activity. Azure Monitor may refuse a whole query that names an aggregation the metric does not
support (reported as 400, 501 or 500 by other clients of the same API), which would leave every endpoint
unknown and none ever deleted: so a refused query is asked again once with the documented aggregation alone.
A minute reported with zero is evidence of no requests; a minute with no value says nothing. An endpoint with
no reported minute at all (no series, an error for that resource, or a resource missing from the answer) is
``known=False``: unknown, which the cleanup never reads as idle.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.platform.azureml.errors import azure_call
from shared.platform.port import DeploymentMetrics, EndpointActivity, counts_as_deployment_error

log = logging.getLogger(__name__)

METRIC_NAME = "RequestsPerMinute"
METRIC_NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
GRANULARITY = timedelta(minutes=1)
AGGREGATIONS = ("Average", "Total")
DOCUMENTED_AGGREGATIONS = ("Average",)
# How the metrics API has answered a query naming an aggregation its metric does not support.
AGGREGATION_REFUSALS = frozenset({400, 500, 501})
# The batch API takes at most 50 resource ids per call.
MAX_RESOURCES_PER_CALL = 50
UNKNOWN = EndpointActivity(last_request_at=None, request_count=0, known=False)


@dataclass(frozen=True)
class MetricsQuery:
    """One ``MetricsClient.query_resources`` call, as keyword arguments."""

    resource_ids: tuple[str, ...]
    since: datetime
    until: datetime

    def kwargs(self) -> dict[str, Any]:
        return {
            "resource_ids": list(self.resource_ids),
            "metric_namespace": METRIC_NAMESPACE,
            "metric_names": [METRIC_NAME],
            "timespan": (self.since, self.until),
            "granularity": GRANULARITY,
            "aggregations": list(AGGREGATIONS),
        }


def endpoint_resource_id(subscription: str, resource_group: str, workspace: str, endpoint: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{workspace}/onlineEndpoints/{endpoint}"
    )


def _resource_of(metric: Any) -> str:
    """A metric's id is ``<resource id>/providers/Microsoft.Insights/metrics/<name>``; ids compare lowercase."""
    metric_id = str(getattr(metric, "id", "") or "")
    return metric_id.lower().split("/providers/microsoft.insights/", 1)[0]


def _activity(metrics: list[Any]) -> EndpointActivity:
    count = 0.0
    last: datetime | None = None
    reported = False
    for metric in metrics:
        for series in getattr(metric, "timeseries", None) or []:
            for point in getattr(series, "data", None) or []:
                values = [getattr(point, name.lower(), None) for name in AGGREGATIONS]
                if all(v is None for v in values):
                    continue  # no value that minute: says nothing either way
                reported = True
                total, average = getattr(point, "total", None), getattr(point, "average", None)
                if not any(v is not None and v > 0 for v in values):
                    continue
                # Total counts requests; a minute with only an average above zero had at least one.
                count += float(total) if total is not None and total > 0 else max(1.0, float(average or 0))
                stamp = point.timestamp
                stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
                if last is None or stamp > last:
                    last = stamp
    if not reported:
        return UNKNOWN
    return EndpointActivity(last_request_at=last, request_count=round(count))


def activities_from_results(resource_ids: Sequence[str], results: Any) -> dict[str, EndpointActivity]:
    """Each queried resource's activity; one absent from the answer is unknown."""
    by_resource: dict[str, list[Any]] = {rid.lower(): [] for rid in resource_ids}
    for result in results or []:
        for metric in getattr(result, "metrics", None) or []:
            if getattr(metric, "name", METRIC_NAME) != METRIC_NAME:
                continue
            key = _resource_of(metric)
            if key in by_resource:
                by_resource[key].append(metric)
    return {rid: _activity(by_resource[rid.lower()]) for rid in resource_ids}


def _query(client: Any, kwargs: dict[str, Any], what: str) -> Any:
    """``client.query_resources(**kwargs)``; refused, once more with the documented aggregation alone."""
    from azure.core.exceptions import HttpResponseError

    with azure_call(what):
        try:
            return client.query_resources(**kwargs)
        except HttpResponseError as exc:
            if exc.status_code not in AGGREGATION_REFUSALS or tuple(kwargs["aggregations"]) == DOCUMENTED_AGGREGATIONS:
                raise
            log.warning(
                "Azure Monitor refused %s with aggregations %s (HTTP %s); asking for %s alone",
                what,
                ",".join(kwargs["aggregations"]),
                exc.status_code,
                ",".join(DOCUMENTED_AGGREGATIONS),
            )
            return client.query_resources(**{**kwargs, "aggregations": list(DOCUMENTED_AGGREGATIONS)})


def query_activity(client: Any, query: MetricsQuery) -> dict[str, EndpointActivity]:
    """Ask Azure Monitor for the request counts of the resources over the window, in batches."""
    out: dict[str, EndpointActivity] = {}
    ids = list(query.resource_ids)
    for start in range(0, len(ids), MAX_RESOURCES_PER_CALL):
        chunk = tuple(ids[start : start + MAX_RESOURCES_PER_CALL])
        names = ", ".join(rid.rsplit("/", 1)[-1] for rid in chunk)
        part = MetricsQuery(chunk, query.since, query.until)
        results = _query(client, part.kwargs(), f"reading {METRIC_NAME} of {names}")
        out.update(activities_from_results(chunk, results))
    return out


# ------------------------------------------------------------------------------ per-deployment error rates
# The canary comparison (shared/services/canary.py) reads the same metric split by two of its dimensions:
# ``deployment`` (the deployment that answered) and ``statusCode`` (its HTTP status); 5xx and 424 (the model
# container failed) are the deployment's errors (``counts_as_deployment_error``). Source: Azure Monitor's
# supported-metrics list for Microsoft.MachineLearningServices/workspaces/onlineEndpoints (link in the module docstring:
# RequestsPerMinute, PT1M, dimensions ``deployment``, ``statusCode``). A filter of ``eq '*'`` on a dimension
# asks for one series per value of it, each with the values in ``metadata_values``.
DEPLOYMENT_DIMENSION = "deployment"
STATUS_DIMENSION = "statusCode"
SPLIT_FILTER = f"{DEPLOYMENT_DIMENSION} eq '*' and {STATUS_DIMENSION} eq '*'"
# With a filter the API returns at most ``max_results`` series, 10 unless asked (``MetricsClient.query_resources``:
# "Valid only if 'filter' is specified. Defaults to 10."): a canary beside its old deployment, each with a few
# status codes, passes 10 and the 5xx series would be the ones cut. 20 deployments (Azure ML's limit per
# endpoint) with up to 50 status codes each fit.
MAX_SERIES = 1000


def deployment_query_kwargs(resource_id: str, since: datetime, until: datetime) -> dict[str, Any]:
    return {
        **MetricsQuery((resource_id,), since, until).kwargs(),
        "filter": SPLIT_FILTER,
        "max_results": MAX_SERIES,
    }


def _dimension(series: Any, name: str) -> str | None:
    values = getattr(series, "metadata_values", None) or {}
    for key, value in values.items():
        if str(key).lower() == name.lower():
            return None if value is None else str(value)
    return None


def deployment_metrics_from_results(results: Any) -> dict[str, DeploymentMetrics]:
    """(requests, errors: 5xx or 424) per deployment; a series without a deployment value is not counted."""
    counts: dict[str, list[float]] = {}
    for result in results or []:
        for metric in getattr(result, "metrics", None) or []:
            if getattr(metric, "name", METRIC_NAME) != METRIC_NAME:
                continue
            for series in getattr(metric, "timeseries", None) or []:
                deployment = _dimension(series, DEPLOYMENT_DIMENSION)
                if not deployment:
                    continue
                status = _dimension(series, STATUS_DIMENSION) or ""
                row = counts.setdefault(deployment, [0.0, 0.0])
                for point in getattr(series, "data", None) or []:
                    total, average = getattr(point, "total", None), getattr(point, "average", None)
                    value = float(total) if total is not None else (max(1.0, float(average)) if average else 0.0)
                    row[0] += value
                    if counts_as_deployment_error(status):
                        row[1] += value
    return {name: DeploymentMetrics(round(n), round(e)) for name, (n, e) in counts.items()}


def query_deployment_metrics(client: Any, resource_id: str, since: datetime, until: datetime) -> dict[str, Any]:
    name = resource_id.rsplit("/", 1)[-1]
    kwargs = deployment_query_kwargs(resource_id, since, until)
    results = _query(client, kwargs, f"reading {METRIC_NAME} per deployment of {name}")
    return deployment_metrics_from_results(results)
