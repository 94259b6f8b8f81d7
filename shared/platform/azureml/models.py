"""Registered models on Azure ML: the fine-tuned model's registration, reads, listing and aliases.

A model is registered from ``azureml://jobs/<job>/outputs/trained_model`` as an MLflow model, version derived
from the run id (``model_version``), so a retried registration finds its version; a version found that is not
the run's (``autopilot_run_id`` tag) is never adopted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
from typing import Any

from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import Model

from shared.exceptions import FieldIssue, NotFoundError, NotManagedError, PlatformError, RejectedError
from shared.naming import ALIAS_TAG_PREFIX, TAG_RUN_ID, alias_tag, is_managed, run_hash
from shared.platform.azureml.clients import AzureClients
from shared.platform.azureml.errors import azure_call
from shared.platform.azureml.pipeline import OUTPUT_NAME
from shared.platform.port import ModelRef, RegisterRequest

log = logging.getLogger(__name__)

MAX_MODEL_VERSION = 2**31 - 1  # registered model versions are positive 32-bit integers


def model_version(run_id: str) -> str:
    """The registered model's version for a run: derived from the run hash, in 1 .. 2^31-1.

    Azure ML model versions are positive integers (the seed used a timestamp); deriving the version from the
    run makes a retried registration address the version it created. Eight hex digits reach 2^32-1 and can be
    0, so the hash is folded into the valid range.
    """
    suffix = run_hash(run_id)
    if not re.fullmatch(r"[0-9a-f]{8}", suffix):
        suffix = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return str(int(suffix, 16) % MAX_MODEL_VERSION + 1)


class Models:
    """Model versions in one workspace's registry (azure-ai-ml ``models``)."""

    def __init__(self, clients: AzureClients) -> None:
        self._clients = clients

    def register_model(self, request: RegisterRequest) -> ModelRef:
        run_id = request.tags.get(TAG_RUN_ID, request.job_name)
        version = model_version(run_id)
        existing = self._find_model(request.model_name, version)
        if existing is not None:
            return _own_model(existing, run_id)
        model = Model(
            path=f"azureml://jobs/{request.job_name}/outputs/{OUTPUT_NAME}",
            type=AssetTypes.MLFLOW_MODEL,
            name=request.model_name,
            version=version,
            description=request.description,
            tags=dict(request.tags),
        )
        try:
            with azure_call(f"registering model {request.model_name}:{version}"):
                created = self._clients.workspace.models.create_or_update(model)
        except PlatformError:
            # Another worker may have registered it between the look and the create.
            again = self._find_model(request.model_name, version)
            if again is None:
                raise
            created = again
        log.info("run %s: registered model %s:%s", run_id, request.model_name, version)
        return _own_model(created, run_id)

    def _find_model(self, name: str, version: str) -> Any | None:
        try:
            with azure_call(f"reading model {name}:{version}"):
                return self._clients.workspace.models.get(name, version=version)
        except NotFoundError:
            return None

    def get_model(self, name: str, version: str) -> ModelRef:
        with azure_call(f"reading model {name}:{version}"):
            return _model_ref(self._clients.workspace.models.get(name, version=version))

    def list_models(self, limit: int = 500) -> list[ModelRef]:
        # The workspace lists model names (containers) without their versions' tags, so each name's versions
        # are listed too: one call per name, at most ``limit`` names and ``limit`` app-tagged versions.
        found: list[ModelRef] = []
        models = self._clients.workspace.models
        with azure_call("listing models"):
            names = [str(m.name) for m in itertools.islice(models.list(), max(limit, 0))]
            for name in names:
                for version in models.list(name=name):
                    if len(found) >= limit:
                        return found
                    ref = _model_ref(version)
                    if is_managed(ref.tags):
                        found.append(ref)
        return found

    # -- aliases ----------------------------------------------------------------------------------------------
    # The workspace registry's MLflow interface documents no registered-model aliases (its MLflow support
    # lists tags on model versions, not aliases: learn.microsoft.com/azure/machine-learning/how-to-manage-
    # models-mlflow), so an alias is a tag on the version, ``autopilot_alias_<alias>: "true"``, written with
    # azure-ai-ml (a model version's tags and description are what may change after it is created).
    def set_model_alias(self, name: str, alias: str, version: str) -> None:
        key = alias_tag(alias)
        with azure_call(f"setting alias {alias} of model {name}"):
            target = self._clients.workspace.models.get(name, version=version)
            if not is_managed(_model_ref(target).tags):
                raise NotManagedError(f"model {name}:{version} is not managed by the app")
            for other in self._alias_holders(name, key):
                if str(other.version) != str(version):
                    self._retag(other, {k: v for k, v in (other.tags or {}).items() if k != key})
            if (target.tags or {}).get(key) != "true":
                self._retag(target, {**(target.tags or {}), key: "true"})

    def delete_model_alias(self, name: str, alias: str) -> None:
        key = alias_tag(alias)
        with azure_call(f"removing alias {alias} of model {name}"):
            for holder in self._alias_holders(name, key):
                self._retag(holder, {k: v for k, v in (holder.tags or {}).items() if k != key})

    def model_aliases(self, name: str) -> dict[str, str]:
        with azure_call(f"reading the aliases of model {name}"):
            versions = list(self._clients.workspace.models.list(name=name))
        found: dict[str, str] = {}
        for version in sorted(versions, key=lambda v: str(v.version)):
            for key, value in (version.tags or {}).items():
                if str(key).startswith(ALIAS_TAG_PREFIX) and value == "true":
                    found[str(key)[len(ALIAS_TAG_PREFIX) :]] = str(version.version)
        return found

    def _alias_holders(self, name: str, key: str) -> list[Any]:
        return [v for v in self._clients.workspace.models.list(name=name) if (v.tags or {}).get(key) == "true"]

    def _retag(self, model: Any, tags: dict[str, str]) -> None:
        model.tags = tags
        self._clients.workspace.models.create_or_update(model)


def _own_model(model: Any, run_id: str) -> ModelRef:
    ref = _model_ref(model)
    if ref.tags.get(TAG_RUN_ID) != run_id:
        owner = ref.tags.get(TAG_RUN_ID) or "(no autopilot_run_id tag)"
        raise RejectedError(
            [
                FieldIssue(
                    "registration.model_name",
                    f"model {ref.name} version {ref.version} exists and belongs to {owner}, not run {run_id}; "
                    "choose another model name",
                )
            ]
        )
    return ref


def _model_ref(model: Any) -> ModelRef:
    return ModelRef(
        name=str(model.name),
        version=str(model.version),
        id=str(model.id),
        tags={str(k): str(v) for k, v in (getattr(model, "tags", None) or {}).items()},
    )


def system_metadata(model: Any) -> dict[str, Any]:
    """The registry's ``system_metadata`` of a model (allow lists, deprecation dates).

    azure-ai-ml 1.35.2 keeps it on ``Model._system_metadata`` (there is no public property) and drops the
    version's ``isArchived`` flag when it builds the entity; the dates say the same for retired models.
    """
    raw = getattr(model, "system_metadata", None) or getattr(model, "_system_metadata", None)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            log.warning("model %s: system_metadata is not JSON; ignored", getattr(model, "name", "?"))
            return {}
    return dict(raw) if isinstance(raw, dict) else {}
