"""Stand-ins for the registry when previewing a job without Azure: a component spec and model tags on disk.

``autopilot plan --component SPEC.yaml --model-tags TAGS.json`` loads the pipeline component with the SDK's
own ``load_component`` (the same object type the registry returns) and the foundation model's tags from a
JSON file, so the plan is built from real SDK objects with no network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.exceptions import FieldIssue, RejectedError
from shared.platform.port import FoundationModel

MAX_TAGS_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class OfflineSources:
    """Files standing in for registry lookups; both given: no workspace call is made at all."""

    component_spec: Path | None = None
    model_tags: Path | None = None

    @property
    def no_workspace(self) -> bool:
        return self.component_spec is not None and self.model_tags is not None


def _bad(option: str, message: str) -> RejectedError:
    return RejectedError([FieldIssue(option, message)])


def load_model(path: Path, name: str, version: str, registry: str) -> FoundationModel:
    """A foundation model from ``{"name", "version", "id", "tags": {...}}`` (or a flat object of tags).

    Tag values must be strings, as the registry stores them (lists and dicts are Python literals in text).
    """
    option = "--model-tags"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _bad(option, f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_TAGS_FILE_BYTES:
        raise _bad(option, f"{path} is {len(raw)} bytes; at most {MAX_TAGS_FILE_BYTES} are read")
    try:
        data: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(option, f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _bad(option, f"{path} must hold a JSON object")
    tags = data.get("tags", data) if isinstance(data.get("tags"), dict) else data
    bad = sorted(str(k) for k, v in tags.items() if not isinstance(v, str))
    if bad:
        raise _bad(option, f"tag values must be strings, as in the registry (not: {', '.join(bad[:5])})")
    file_name = data.get("name") if isinstance(data.get("name"), str) else None
    if file_name and file_name != name:
        raise _bad(option, f"{path} describes model {file_name!r}, the config asks for {name!r}")
    file_version = str(data["version"]) if isinstance(data.get("version"), str | int) else None
    use_version = file_version if version == "latest" and file_version else version
    if file_version and version != "latest" and version != file_version:
        raise _bad(option, f"{path} describes version {file_version}, the config asks for {version}")
    if isinstance(data.get("id"), str):
        asset_id = data["id"]
    elif use_version == "latest":
        asset_id = f"azureml://registries/{registry}/models/{name}/labels/latest"
    else:
        asset_id = f"azureml://registries/{registry}/models/{name}/versions/{use_version}"
    return FoundationModel(name=name, version=use_version, id=asset_id, tags=dict(tags))


def load_component_spec(path: Path) -> Any:
    """The pipeline component from a YAML spec, via the SDK (no workspace needed)."""
    from azure.ai.ml import load_component

    option = "--component"
    if not path.is_file():
        raise _bad(option, f"{path} is not a file")
    try:
        return load_component(source=path)
    except Exception as exc:  # the loader raises marshmallow, YAML, OS and its own errors: all mean "not a spec"
        message = " ".join(str(exc).split())[:300]
        raise _bad(option, f"{path} is not a loadable component spec ({type(exc).__name__}: {message})") from None
