"""Endpoint activity for the idle check: Azure Monitor's ``RequestsPerMinute`` metric of the endpoint.

azure-monitor-query 2.0 has no metrics client any more (its README: "MetricsClient and MetricsQueryClient
have been removed ... use azure-monitor-querymetrics"). The successor, ``azure.monitor.querymetrics``
``MetricsClient``, queries the regional metrics endpoint with ``query_resources``; the endpoint's region
comes from the endpoint resource itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.platform.azureml.errors import azure_call
from shared.platform.port import EndpointActivity

METRIC_NAME = "RequestsPerMinute"
METRIC_NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
GRANULARITY = timedelta(minutes=1)
AGGREGATION = "Total"


@dataclass(frozen=True)
class MetricsQuery:
    """One ``MetricsClient.query_resources`` call, as keyword arguments."""

    resource_id: str
    since: datetime
    until: datetime

    def kwargs(self) -> dict[str, Any]:
        return {
            "resource_ids": [self.resource_id],
            "metric_namespace": METRIC_NAMESPACE,
            "metric_names": [METRIC_NAME],
            "timespan": (self.since, self.until),
            "granularity": GRANULARITY,
            "aggregations": [AGGREGATION],
        }


def endpoint_resource_id(subscription: str, resource_group: str, workspace: str, endpoint: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{workspace}/onlineEndpoints/{endpoint}"
    )


def activity_from_results(results: Any) -> EndpointActivity:
    """Sum the per-minute totals; the last minute with requests is the last activity."""
    count = 0.0
    last: datetime | None = None
    for result in results or []:
        for metric in getattr(result, "metrics", None) or []:
            if getattr(metric, "name", METRIC_NAME) != METRIC_NAME:
                continue
            for series in getattr(metric, "timeseries", None) or []:
                for point in getattr(series, "data", None) or []:
                    total = getattr(point, "total", None) or 0
                    if total <= 0:
                        continue
                    count += float(total)
                    stamp = point.timestamp
                    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
                    if last is None or stamp > last:
                        last = stamp
    return EndpointActivity(last_request_at=last, request_count=round(count))


def query_activity(client: Any, query: MetricsQuery) -> EndpointActivity:
    """Ask Azure Monitor for the endpoint's request counts over the window."""
    with azure_call(f"reading {METRIC_NAME} of {query.resource_id.rsplit('/', 1)[-1]}"):
        results = client.query_resources(**query.kwargs())
    return activity_from_results(results)
