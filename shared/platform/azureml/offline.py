"""Stand-ins for the registry when previewing a job without Azure: a component spec and model tags on disk.

``autopilot plan --component SPEC.yaml --model-tags TAGS.json`` (or ``--model-spec MODEL.spec.yaml``) loads the
pipeline component with the SDK's own ``load_component`` (the same object type the registry returns) and the
foundation model from a JSON file of its tags or from its registry asset spec (tags, ``system_metadata`` with
the allow lists and lifecycle dates, ``isArchived``), so the plan is built from real SDK objects with no network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shared.exceptions import FieldIssue, RejectedError
from shared.platform.port import FoundationModel

MAX_TAGS_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class OfflineSources:
    """Files standing in for registry lookups; both given: no workspace call is made at all."""

    component_spec: Path | None = None
    model_tags: Path | None = None
    model_spec: Path | None = None  # a registry model asset spec.yaml (tags, system_metadata, isArchived)

    @property
    def model_file(self) -> Path | None:
        return self.model_spec or self.model_tags

    @property
    def no_workspace(self) -> bool:
        return self.component_spec is not None and self.model_file is not None


def _bad(option: str, message: str) -> RejectedError:
    return RejectedError([FieldIssue(option, message)])


def _read_capped(path: Path, option: str) -> bytes:
    """The file's bytes, or an error on ``option`` if it cannot be read or is larger than a registry answer."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _bad(option, f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_TAGS_FILE_BYTES:
        raise _bad(option, f"{path} is {len(raw)} bytes; at most {MAX_TAGS_FILE_BYTES} are read")
    return raw


def load_model(path: Path, name: str, version: str, registry: str) -> FoundationModel:
    """A foundation model from ``{"name", "version", "id", "tags": {...}}`` (or a flat object of tags).

    Tag values must be strings, as the registry stores them (lists and dicts are Python literals in text).
    """
    option = "--model-tags"
    raw = _read_capped(path, option)
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


def as_tag_text(value: Any) -> str:
    """A spec.yaml tag value as the registry stores it: text, lists and maps as Python literals."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) or value is None:
        return "" if value is None else str(value)
    return repr(value)


def load_model_spec(path: Path, name: str, version: str, registry: str) -> FoundationModel:
    """A foundation model from its registry asset ``spec.yaml`` (as in Azure/azureml-assets
    ``assets/models/system/<model>/spec.yaml``): name, version, tags, ``system_metadata`` and ``isArchived``."""
    option = "--model-spec"
    raw = _read_capped(path, option)
    try:
        data: Any = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _bad(option, f"{path} is not YAML: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise _bad(option, f"{path} is not a model asset spec (a mapping with name, version, tags)")
    if data["name"] != name:
        raise _bad(option, f"{path} describes model {data['name']!r}, the config asks for {name!r}")
    file_version = str(data["version"]) if isinstance(data.get("version"), str | int) else None
    if file_version is None:
        raise _bad(option, f"{path} has no version")
    if version not in ("latest", file_version):
        raise _bad(option, f"{path} describes version {file_version}, the config asks for {version}")
    tags = data.get("tags") or {}
    meta = data.get("system_metadata") or {}
    if not isinstance(tags, dict) or not isinstance(meta, dict):
        raise _bad(option, f"{path}: tags and system_metadata must be mappings")
    return FoundationModel(
        name=name,
        version=file_version,
        id=f"azureml://registries/{registry}/models/{name}/versions/{file_version}",
        tags={str(k): as_tag_text(v) for k, v in tags.items()},
        system_metadata=dict(meta),
        archived=data.get("isArchived") is True,
    )


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
