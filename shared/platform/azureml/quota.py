"""Quota and capacity before training: will the job's nodes and, hours later, the deployment fit?

Read from the workspace with ``compute.list_sizes()`` (each VM size's family and vCPUs) and
``compute.list_usage()`` (per VM family: vCPUs in use and the limit). The usage entries are named as the
service names them (azure-rest-api-specs, machinelearningservices 2024-04-01 examples/Usage/list.json):
``Standard NCADSA100v4 Family Cluster Dedicated vCPUs``, at the subscription level (type ``.../vmFamily/usages``)
and per workspace (``.../workspaces/<name>/usages/...``), plus ``Total Cluster Dedicated Regional vCPUs``.
Managed online deployments draw on the same dedicated vCPU quota as compute clusters, and Azure ML holds
back 20% more instances for upgrades ("Azure Machine Learning reserves 20% extra compute resources for
performing upgrades. For example, if you request 10 instances in a deployment, you must have a quota for 12":
"Manage and increase quotas and limits for resources with Azure Machine Learning",
https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas).

- fine-tune: the cluster must scale to the nodes asked (``max_instances``); nodes x vCPUs must fit the family
  and regional limits (SHORT otherwise), and fit what is free now (BUSY otherwise: the job queues, no GPU
  hour is spent, so that is never a reason to refuse it);
- inference: ceil(1.2 x instance_count) x vCPUs must fit what is free now (SHORT otherwise: deploying would
  fail with OutOfQuota after the training hours). Usage is as of submit; a job holding the same family may
  free it before the deployment starts, which is why the message says what is in use.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.exceptions import NotFoundError, PlatformError
from shared.platform.azureml.compute import SERVERLESS
from shared.platform.azureml.errors import azure_call
from shared.platform.port import CapacityCheck, CapacityOutcome, CapacityRequest

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

UPGRADE_RESERVE = 1.2
REGIONAL_TOTAL = "Total Cluster Dedicated Regional vCPUs"
_WORKSPACE_USAGE = re.compile(r"/workspaces/([^/]+)/usages/", re.IGNORECASE)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@dataclass(frozen=True)
class Quota:
    """One limit that applies (the tightest of those the service reported for a family or the region)."""

    label: str
    used: int
    limit: int

    @property
    def free(self) -> int:
        return max(self.limit - self.used, 0)


def _applies(usage: Any, workspace_name: str) -> bool:
    """Subscription-level entries and this workspace's own; per-compute entries are parts of those."""
    usage_id = str(getattr(usage, "id", "") or "")
    if "/computes/" in usage_id.lower():
        return False
    found = _WORKSPACE_USAGE.search(usage_id)
    return found is None or found.group(1).lower() == workspace_name.lower()


def _tightest(usages: Sequence[Any], name: str, workspace_name: str) -> Quota | None:
    wanted = _norm(name)
    found: list[Quota] = []
    for usage in usages:
        label = str(getattr(getattr(usage, "name", None), "value", "") or "")
        limit = getattr(usage, "limit", None)
        if _norm(label) != wanted or limit is None or int(limit) < 0 or not _applies(usage, workspace_name):
            continue  # a negative limit is "no limit" (the service reports -1 for low-priority families)
        found.append(Quota(label, int(getattr(usage, "current_value", 0) or 0), int(limit)))
    return min(found, key=lambda q: q.free) if found else None


def family_usage_name(family: str) -> str:
    """``standardNCADSA100v4Family`` (a VM size's family) -> the name of its dedicated vCPU usage entry."""
    core = re.sub(r"family$", "", family, flags=re.IGNORECASE)
    core = re.sub(r"^standard", "", core, flags=re.IGNORECASE)
    return f"Standard {core} Family Cluster Dedicated vCPUs"


class _Workspace:
    """The workspace's sizes and usages, read once per check."""

    def __init__(self, workspace: MLClient, name: str) -> None:
        self.client = workspace
        self.name = name
        with azure_call("listing the workspace's VM sizes"):
            self.sizes = {str(s.name).lower(): s for s in workspace.compute.list_sizes()}
        with azure_call("reading the workspace's quota usage"):
            self.usages = list(workspace.compute.list_usage())

    def size(self, sku: str) -> Any | None:
        return self.sizes.get(sku.lower())

    def limits(self, family: str) -> list[Quota]:
        family_quota = _tightest(self.usages, family_usage_name(family), self.name)
        regional = _tightest(self.usages, REGIONAL_TOTAL, self.name)
        return [q for q in (family_quota, regional) if q is not None]


def _vcpus(size: Any) -> int:
    return int(getattr(size, "v_cp_us", 0) or 0)


def _finetune(ws: _Workspace, request: CapacityRequest) -> list[CapacityCheck]:
    compute = request.compute
    nodes = compute.nodes
    serverless = compute.cluster == SERVERLESS
    path = "compute.instance_type" if serverless else "compute.cluster"
    checks: list[CapacityCheck] = []
    if not serverless:
        try:
            with azure_call(f"reading compute {compute.cluster}"):
                cluster: Any = ws.client.compute.get(compute.cluster)
        except NotFoundError:
            return [CapacityCheck(path, CapacityOutcome.SHORT, f"no compute named {compute.cluster!r}")]
        most = getattr(cluster, "max_instances", None)
        if most is not None and nodes > int(most):
            checks.append(
                CapacityCheck(
                    "compute.nodes",
                    CapacityOutcome.SHORT,
                    f"{nodes} node(s) asked, but cluster {compute.cluster!r} scales to at most {most} "
                    "(max_instances); raise its maximum or ask for fewer nodes",
                )
            )
    size = ws.size(request.compute_size)
    if size is None or not _vcpus(size) or not getattr(size, "family", None):
        unknown = f"the workspace lists no vCPUs or family for {request.compute_size}"
        checks.append(CapacityCheck(path, CapacityOutcome.UNKNOWN, unknown))
        return checks
    checks.append(_fit(ws, path, "the fine-tune job", nodes, size, queue_when_busy=True))
    return checks


def _fit(ws: _Workspace, path: str, what: str, instances: int, size: Any, *, queue_when_busy: bool) -> CapacityCheck:
    vcpus = _vcpus(size)
    need = instances * vcpus
    family = str(size.family)
    limits = ws.limits(family)
    sums = f"{instances} x {vcpus} vCPUs of {size.name} = {need} vCPUs"
    if not limits:
        unknown = f"{what}: {sums}; the workspace reports no quota for {family}"
        return CapacityCheck(path, CapacityOutcome.UNKNOWN, unknown)
    for quota in limits:
        if need > quota.limit:
            return CapacityCheck(
                path,
                CapacityOutcome.SHORT,
                f"{what} needs {sums}, more than the limit of {quota.limit} ({quota.label}); "
                "request a quota increase or choose another VM size",
            )
    for quota in limits:
        if need > quota.free:
            outcome = CapacityOutcome.BUSY if queue_when_busy else CapacityOutcome.SHORT
            then = (
                "the job waits in the queue until they are free"
                if queue_when_busy
                else "deploying would fail with OutOfQuota; free quota (delete idle endpoints, scale clusters "
                "down) or request an increase before training"
            )
            return CapacityCheck(
                path,
                outcome,
                f"{what} needs {sums}, but only {quota.free} of {quota.limit} are free now "
                f"({quota.used} in use, {quota.label}); {then}",
            )
    tightest = min(limits, key=lambda q: q.free)
    return CapacityCheck(
        path, CapacityOutcome.OK, f"{what}: {sums}; {tightest.free} of {tightest.limit} free ({tightest.label})"
    )


def _inference(ws: _Workspace, request: CapacityRequest) -> CapacityCheck:
    sku = request.inference_sku or ""
    size = ws.size(sku)
    path = "deployment.instance_count"
    if size is None or not _vcpus(size) or not getattr(size, "family", None):
        return CapacityCheck(path, CapacityOutcome.UNKNOWN, f"the workspace lists no vCPUs or family for {sku}")
    held = math.ceil(UPGRADE_RESERVE * request.inference_instances)
    what = (
        f"the deployment ({request.inference_instances} instance(s), {held} with the 20% Azure ML holds for upgrades)"
    )
    return _fit(ws, path, what, held, size, queue_when_busy=False)


def check_capacity(workspace: MLClient | None, workspace_name: str, request: CapacityRequest) -> list[CapacityCheck]:
    """The checks, in config order; ``workspace`` None (offline plan) reports them as not checked."""
    if workspace is None:
        offline = "offline: quota and capacity not checked; submit checks them"
        return [CapacityCheck("compute", CapacityOutcome.UNKNOWN, offline)]
    try:
        ws = _Workspace(workspace, workspace_name)
        checks = _finetune(ws, request)
        if request.inference_sku:
            checks.append(_inference(ws, request))
    except PlatformError as exc:
        # Quota is evidence for refusing a run, never a reason to fail one: no answer means not checked.
        return [CapacityCheck("compute", CapacityOutcome.UNKNOWN, f"quota and capacity not checked: {exc}")]
    return checks
