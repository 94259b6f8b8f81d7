"""The seed notebook's compute checks, as rejections with field paths instead of ``ValueError``s.

Fine-tune compute: the cluster exists and has not failed to provision; its VM size is in the model's
``finetune_compute_allow_list`` (case-insensitive) or, without one, not in the seed's deny list; the GPUs per
node come from ``compute.list_sizes()``. Serverless: the instance type is checked the same way. Inference:
the SKU must be in ``inference_compute_allow_list`` when the model has one.

With no workspace (``autopilot plan`` offline) the checks that need one are reported as notes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.exceptions import FieldIssue, NotFoundError, RejectedError
from shared.platform.azureml.errors import azure_call
from shared.platform.port import ComputeInfo, ComputeRequest

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

log = logging.getLogger(__name__)

# The seed refuses these K80 sizes when the model has no allow list.
DENY_LIST = ("standard_nc6", "standard_nc12", "standard_nc24", "standard_nc24r")
SERVERLESS = "serverless"
LOCAL_CLUSTERS = frozenset({"local-cpu", "local-cuda"})
# Offline only (``autopilot plan`` without a workspace): GPUs per node of common fine-tuning SKUs, so the
# preview's GPU count and display name match what the workspace's list_sizes() will say at submit.
OFFLINE_GPU_COUNTS = {
    "standard_nc6s_v3": 1,
    "standard_nc12s_v3": 2,
    "standard_nc24s_v3": 4,
    "standard_nc24rs_v3": 4,
    "standard_nd40rs_v2": 8,
    "standard_nc24ads_a100_v4": 1,
    "standard_nc48ads_a100_v4": 2,
    "standard_nc96ads_a100_v4": 4,
    "standard_nd96asr_v4": 8,
    "standard_nd96amsr_a100_v4": 8,
    "standard_nc40ads_h100_v5": 1,
    "standard_nc80adis_h100_v5": 2,
    "standard_nd96isr_h100_v5": 8,
}


def sku_problem(size: str, allow_list: list[str] | None, tag: str) -> str | None:
    """Why ``size`` may not be used, or None. Allow lists compare case-insensitively, as the seed does."""
    if allow_list is not None:
        if size.lower() not in {s.lower() for s in allow_list}:
            return f"VM size {size} is not in the model's {tag}: {', '.join(allow_list)}"
        return None
    if size.lower() in DENY_LIST:
        return f"VM size {size} is not supported for fine-tuning (refused: {', '.join(DENY_LIST)})"
    return None


def _sku_gpus(workspace: MLClient, size: str) -> tuple[int | None, list[str]]:
    with azure_call("listing the workspace's VM sizes"):
        sizes = list(workspace.compute.list_sizes())
    names = [str(s.name) for s in sizes]
    for sku in sizes:
        if str(sku.name).lower() == size.lower():
            return int(sku.gpus or 0), names
    return None, names


def _cluster_size(workspace: MLClient, cluster: str, issues: list[FieldIssue]) -> str | None:
    try:
        with azure_call(f"reading compute {cluster}"):
            compute: Any = workspace.compute.get(cluster)
    except NotFoundError:
        issues.append(
            FieldIssue(
                "compute.cluster", f"no compute named {cluster!r} in the workspace (create it, or use serverless)"
            )
        )
        return None
    state = str(getattr(compute, "provisioning_state", "") or "")
    if state.lower() == "failed":
        issues.append(
            FieldIssue("compute.cluster", f"compute {cluster!r} failed to provision; fix it or use a different compute")
        )
    size = getattr(compute, "size", None)
    if not size:
        issues.append(FieldIssue("compute.cluster", f"compute {cluster!r} has no VM size (is it a compute cluster?)"))
        return None
    return str(size)


def check_finetune_compute(
    request: ComputeRequest, allow_list: list[str] | None, workspace: MLClient | None, tag: str
) -> ComputeInfo:
    """Validate the fine-tune compute; ``workspace`` None checks only what needs no workspace."""
    issues: list[FieldIssue] = []
    notes: list[str] = []
    if request.cluster in LOCAL_CLUSTERS:
        raise RejectedError(
            [
                FieldIssue(
                    "compute.cluster",
                    f"{request.cluster} runs on the local platform; on Azure ML name a compute cluster or serverless",
                )
            ]
        )
    serverless = request.cluster == SERVERLESS
    size: str | None
    if serverless:
        path = "compute.instance_type"
        size = request.instance_type
        if not size:
            issues.append(FieldIssue(path, "required with serverless compute (a GPU SKU from the allow list)"))
    else:
        path = "compute.cluster"
        if request.instance_type:
            notes.append(f"compute.instance_type is ignored: cluster {request.cluster} runs on its own VM size")
        if workspace is None:
            notes.append(
                f"offline: cluster {request.cluster!r} not checked (existence, provisioning state, VM size "
                "against the allow list); submit checks it"
            )
            size = None
        else:
            size = _cluster_size(workspace, request.cluster, issues)

    if size:
        problem = sku_problem(size, allow_list, tag)
        if problem:
            issues.append(FieldIssue(path, problem))
            size = None  # its GPU count does not matter any more

    sku_gpus: int | None = None
    if size and workspace is not None:
        sku_gpus, available = _sku_gpus(workspace, size)
        if sku_gpus is None:
            shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
            issues.append(FieldIssue(path, f"GPU count for VM size {size} not found; available sizes: {shown}"))
        elif sku_gpus < 1:
            issues.append(FieldIssue(path, f"VM size {size} has no GPUs; fine-tuning needs a GPU SKU"))
    elif size:
        sku_gpus = OFFLINE_GPU_COUNTS.get(size.lower())
        if sku_gpus is not None:
            notes.append(
                f"offline: {size} has {sku_gpus} GPU(s) per node by the built-in table; submit asks the workspace"
            )

    if request.gpus_per_node is not None:
        if sku_gpus is not None and sku_gpus >= 1 and request.gpus_per_node > sku_gpus:
            issues.append(
                FieldIssue(
                    "compute.gpus_per_node", f"{request.gpus_per_node} is more than the {sku_gpus} GPU(s) of {size}"
                )
            )
        gpus = request.gpus_per_node
    elif sku_gpus is not None and sku_gpus >= 1:
        gpus = sku_gpus
    else:
        gpus = 1
        if workspace is None:
            notes.append(
                "offline: GPUs per node unknown, 1 assumed "
                "(submit reads it from the VM size; or set compute.gpus_per_node)"
            )

    if issues:
        raise RejectedError(issues)
    log.info("compute %s: size %s, %s GPU(s) per node", request.cluster, size, gpus)
    return ComputeInfo(cluster=request.cluster, size=size or "unknown", gpus_per_node=gpus, notes=tuple(notes))


def check_inference_sku(instance_type: str, allow_list: list[str] | None, tag: str) -> str:
    """The inference SKU to deploy on, spelt as the allow list spells it."""
    path = "deployment.instance_type"
    if not instance_type:
        raise RejectedError(
            [FieldIssue(path, "required on Azure ML (an online endpoint SKU such as Standard_NC24ads_A100_v4)")]
        )
    if instance_type.lower().startswith("local-"):
        raise RejectedError([FieldIssue(path, f"{instance_type} is for the local platform; name an Azure VM SKU")])
    if allow_list is None:
        return instance_type
    for sku in allow_list:
        if sku.lower() == instance_type.lower():
            return sku
    raise RejectedError([FieldIssue(path, f"{instance_type} is not in the model's {tag}: {', '.join(allow_list)}")])
