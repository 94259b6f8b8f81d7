"""What the local platform accepts before anything runs: its computes (``local-cpu``, and ``local-cuda``
where torch sees a GPU) for training and serving, and data files under the data root that validate as chat
data. Each refusal is a ``RejectedError`` naming the config field."""

from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shared.exceptions import FieldIssue, RejectedError
from shared.platform.port import ComputeInfo, ComputeRequest

CPU = "local-cpu"
CUDA = "local-cuda"


@functools.cache
def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def available_clusters() -> list[str]:
    return [CPU, CUDA] if cuda_available() else [CPU]


def _in_list(value: str, allow_list: list[str] | None) -> bool:
    return allow_list is None or value.lower() in {a.lower() for a in allow_list}


def _local_compute(field: str, name: str, allow_list: list[str] | None, list_name: str) -> str:
    """``name`` lower-cased once it is a local compute in ``allow_list``; torch is imported only when
    someone asks for something other than the CPU."""
    compute = name.lower()
    if compute != CPU and compute not in available_clusters():
        available = ", ".join(available_clusters())
        raise RejectedError([FieldIssue(field, f"{name!r} is not a local compute; available: {available}")])
    if not _in_list(compute, allow_list):
        raise RejectedError([FieldIssue(field, f"{name!r} is not in the model's {list_name} {allow_list}")])
    return compute


def check_compute(request: ComputeRequest, allow_list: list[str] | None) -> ComputeInfo:
    cluster = _local_compute("compute.cluster", request.cluster, allow_list, "finetune_compute_allow_list")
    notes: list[str] = []
    if request.instance_type:
        notes.append(f"compute.instance_type {request.instance_type} is ignored on the local platform")
    if request.nodes > 1:
        notes.append(f"the local platform trains on one machine; nodes={request.nodes} is ignored")
    gpus = 0
    if cluster == CUDA:
        gpus = 1
        if request.gpus_per_node not in (None, 1):
            notes.append(f"local-cuda trains on one GPU; gpus_per_node={request.gpus_per_node} is ignored")
    elif request.gpus_per_node:
        notes.append(f"local-cpu has no GPU; gpus_per_node={request.gpus_per_node} is ignored")
    return ComputeInfo(cluster=cluster, size=cluster, gpus_per_node=gpus, notes=tuple(notes))


def check_inference_compute(instance_type: str, allow_list: list[str] | None) -> str:
    return _local_compute("deployment.instance_type", instance_type or CPU, allow_list, "inference_compute_allow_list")


def local_path(root: Path, field: str, raw: str) -> tuple[Path | None, FieldIssue | None]:
    """``raw`` (a path or a ``file://`` URI) resolved under ``root``, or the issue with it."""
    root = root.resolve()
    text = raw
    if "://" in raw or raw.startswith("azureml:"):
        parts = urlsplit(raw)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            return None, FieldIssue(
                field,
                f"the local platform reads files under the data root ({root}); "
                f"{parts.scheme or 'azureml'} URIs are for Azure ML",
            )
        text = unquote(parts.path)
    path = Path(text)
    resolved = (path if path.is_absolute() else root / path).resolve()
    if not resolved.is_relative_to(root):
        return None, FieldIssue(field, f"must be under the data root {root} (AUTOPILOT_DATA_ROOT)")
    return resolved, None


def check_data(root: Path, paths: dict[str, str]) -> dict[str, str]:
    """Each data file resolved under ``root`` and validated as chat data (train: as training data)."""
    from local.platform.dataset import validate_chat_file

    issues: list[FieldIssue] = []
    resolved: dict[str, str] = {}
    for key, raw in paths.items():
        field = f"data.{key}"
        path, issue = local_path(root, field, raw)
        if issue is not None or path is None:
            issues.append(issue or FieldIssue(field, "not a usable path"))
            continue
        if not path.is_file():
            issues.append(FieldIssue(field, f"{raw!r} not found under the data root {root}"))
            continue
        report = validate_chat_file(path, training=key == "train")
        if not report.ok:
            issues.append(FieldIssue(field, report.summary()))
            continue
        resolved[key] = str(path)
    if issues:
        raise RejectedError(issues)
    return resolved
