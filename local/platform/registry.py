"""The local model registry: MLflow's model registry on the workspace's SQLite store.

A registration is idempotent per run: the version carrying the run's ``autopilot_run_id`` tag is looked up
before anything is created, under a file lock so two racing registrations cannot make two versions.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

from local.common.statefiles import file_lock
from local.platform.mlflow_retry import first_use
from local.platform.workspace import Workspace, safe_name
from shared.exceptions import FieldIssue, NotFoundError, NotManagedError, PlatformError, RejectedError
from shared.naming import TAG_MANAGED, TAG_RUN_ID, is_managed
from shared.platform.port import ModelRef

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0


def model_id(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


class Registry:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    @functools.cached_property
    def client(self) -> Any:
        from mlflow import MlflowClient

        self.workspace.ensure()
        uri = self.workspace.tracking_uri

        def open_stores() -> Any:
            # Constructing the client already opens (creates, migrates) the tracking store, and the registry
            # store does on its first use: both under the workspace's lock, so only one process migrates.
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
            return client

        return first_use(self.workspace.locks, uri, open_stores)

    def _ref(self, version: Any) -> ModelRef:
        return ModelRef(
            name=version.name,
            version=str(version.version),
            id=model_id(version.name, str(version.version)),
            tags=dict(version.tags or {}),
        )

    def find(self, name: str, run_id: str) -> ModelRef | None:
        """The version of ``name`` registered for ``run_id``, if any."""
        if "'" in name or "'" in run_id:
            return None
        versions = self.client.search_model_versions(f"name='{name}' and tag.`{TAG_RUN_ID}`='{run_id}'")
        if not versions:
            return None
        first = min(versions, key=lambda v: int(v.version))
        return self._ref(first)

    def list_managed(self, limit: int) -> list[ModelRef]:
        """Versions tagged as the app's (``shared.naming``). Without a store yet there are none, and the store is
        not created for the asking (nor mlflow imported)."""
        if not self.workspace.mlflow_db.exists():
            return []
        versions = self.client.search_model_versions(f"tag.`{TAG_MANAGED}`='true'", max_results=max(limit, 1))
        refs = [self._ref(version) for version in versions]
        return [ref for ref in refs if is_managed(ref.tags)][: max(limit, 0)]

    def register(
        self, *, name: str, source: Path, mlflow_run_id: str | None, tags: dict[str, str], description: str
    ) -> tuple[ModelRef, bool]:
        """(the version, created now?) for the run in ``tags``; a second call returns the first version."""
        from mlflow.exceptions import MlflowException

        if not safe_name(name):
            raise RejectedError([FieldIssue("registration.model_name", f"{name!r} is not a valid model name")])
        run = tags.get(TAG_RUN_ID, "")
        with file_lock(self.workspace.locks / "registry.lock"):
            existing = self.find(name, run) if run else None
            if existing is not None:
                log.info("model %s:%s already registered for run %s", existing.name, existing.version, run)
                return existing, False
            try:
                try:
                    self.client.get_registered_model(name)
                except MlflowException:
                    self.client.create_registered_model(name, description="Fine-tuned by Fine-tune Autopilot")
                version = self.client.create_model_version(
                    name, source=str(source), run_id=mlflow_run_id, tags=tags, description=description
                )
            except MlflowException as exc:
                raise PlatformError(f"registering {name} failed: {exc.message}", code="RegistrationFailed") from None
            version = self._wait_ready(name, str(version.version))
        log.info("registered model %s:%s for run %s", name, version.version, run)
        return self._ref(version), True

    def _wait_ready(self, name: str, version: str) -> Any:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            current = self.client.get_model_version(name, version)
            if current.status == "READY":
                return current
            if current.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
                why = current.status_message or "no reason given"
                raise PlatformError(
                    f"model {name}:{version} is {current.status}: {why}",
                    code="RegistrationFailed",
                )
            time.sleep(0.5)

    def _version(self, name: str, version: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(name, version)
        except MlflowException:
            raise NotFoundError(f"no registered model {name}:{version}") from None

    def get(self, name: str, version: str) -> ModelRef:
        return self._ref(self._version(name, version))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """MLflow's own alias (``set_registered_model_alias``): setting it moves it off the version that had it."""
        from mlflow.exceptions import MlflowException

        if not is_managed(self.get(name, version).tags):
            raise NotManagedError(f"model {name}:{version} is not managed by the app")
        try:
            self.client.set_registered_model_alias(name, alias, version)
        except MlflowException as exc:
            raise PlatformError(f"setting alias {alias} of {name} failed: {exc.message}", code="AliasFailed") from None

    def delete_alias(self, name: str, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        if alias not in self.aliases(name):
            return
        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException as exc:
            raise PlatformError(f"removing alias {alias} of {name} failed: {exc.message}", code="AliasFailed") from None

    def aliases(self, name: str) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        if not self.workspace.mlflow_db.exists():
            return {}
        try:
            model = self.client.get_registered_model(name)
        except MlflowException:
            return {}
        return {str(alias): str(version) for alias, version in (model.aliases or {}).items()}

    def source(self, name: str, version: str) -> Path:
        """The MLflow model directory of a registered version (what an endpoint loads)."""
        return Path(str(self._version(name, version).source))
