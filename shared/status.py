"""Status blobs for the person who dropped a config, in the status container:

- ``_runs/<run id>.json``: one per run, the run as the ledger has it;
- ``<config path>.json`` (``team/phi3.yaml.json``): the config's document: the latest run's status at the top
  level (``latest_run`` names it) and ``runs``, every run of that path, newest first. "Latest" is the run
  received last (``created_at``), so a superseded run that is still writing never takes the document back.

The ledger is the truth; these are its mirror, written after each ledger write. Two writers of one run
(a timer's update and a cleanup's delete) can mirror out of order, so every write is conditional on the blob's
version and never replaces a copy of the run with an older one (``revision``, the run's write count): a
terminal state is not overwritten by the ``deployed`` copy that lost the race. The config document is
read-merge-write under the same condition, so two runs of one config do not drop each other's entry.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any, Protocol

from shared.exceptions import ConcurrencyError
from shared.ledger.parts import errors_to_json
from shared.ledger.record import RunRecord, params_to_json
from shared.naming import run_status_blob_name, status_blob_name
from shared.states import RunState
from shared.storage import StorageConnection, as_connection

MIRROR_ATTEMPTS = 5  # conditional writes that lost to another writer before the mirror gives up (logged)


class StatusStore(Protocol):
    def write(self, blob_name: str, document: dict[str, Any]) -> None:
        """Write (overwrite) the status document at ``blob_name``."""

    def read(self, blob_name: str) -> dict[str, Any] | None:
        """The document, or None."""

    def read_versioned(self, blob_name: str) -> tuple[dict[str, Any] | None, str | None]:
        """The document and its version (an opaque ETag), or (None, None)."""

    def write_if(self, blob_name: str, document: dict[str, Any], version: str | None) -> bool:
        """Write only if the blob is still at ``version`` (None: only if there is no blob); False if not."""


def status_document(record: RunRecord) -> dict[str, Any]:
    """What the person who dropped the config sees. Built from the ledger; holds no key or URL with a key."""
    return {
        "run_id": record.run_id,
        "revision": record.revision,
        "config": record.config_blob,
        "state": record.state.value,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "timeline": record.timeline,
        "errors": errors_to_json(record.errors),
        "error_code": record.last_error_code,
        "platform": record.platform,
        "job": {"name": record.job_name, "status": record.job_status, "experiment": record.experiment_name},
        "model": {"name": record.model_name, "version": record.model_version} if record.model_name else None,
        "endpoint": (
            {
                "name": record.endpoint_name,
                "deployment": record.deployment_name,
                "scoring_uri": record.scoring_uri,
            }
            if record.endpoint_name
            else None
        ),
        "metrics": record.metrics,
        "history": record.history,
        # The job's and the endpoint's pages in the platform's UI (Azure ML studio), where it has one.
        "links": record.links,
        "smoke_test": record.smoke_test.to_json() if record.smoke_test else None,
        "effective_params": params_to_json(record.effective_params) if record.effective_params else None,
        "notes": record.notes,
        "approval": record.approval.to_json() if record.approval else None,
        # A rollout on a shared endpoint (canary share, window, error rates seen, outcome); see canary.py.
        "rollout": record.rollout.to_json() if record.rollout else None,
        "awaiting": awaiting(record),
        # Each notification the run owes or sent, with its attempts (shared/ledger/outbox.py).
        "notifications": record.outbox.shown(),
    }


def awaiting(record: RunRecord) -> str | None:
    """What the run waits for from a person, if anything (today: approval of a registered model)."""
    if record.state == RunState.REGISTERED and record.manual_approval and record.approval is None:
        return "approval"
    return None


class BlobStatusStore:
    """``StatusStore`` on a blob container (Azurite locally); the container is created on first use."""

    def __init__(self, connection: StorageConnection | str, container: str) -> None:
        # A connection string (Azurite) or the identity-based connection of the Function App.
        self._service = as_connection(connection).blob_service()
        self._container = self._service.get_container_client(container)
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            from azure.core.exceptions import ResourceExistsError

            with contextlib.suppress(ResourceExistsError):
                self._container.create_container()
            self._ready = True

    def write(self, blob_name: str, document: dict[str, Any]) -> None:
        self._upload(blob_name, document)

    def write_if(self, blob_name: str, document: dict[str, Any], version: str | None) -> bool:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        try:
            if version is None:
                self._upload(blob_name, document, match_condition=MatchConditions.IfMissing)
            else:
                self._upload(blob_name, document, etag=version, match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError):
            return False  # 409 BlobAlreadyExists or 412 ConditionNotMet: another writer came first
        return True

    def _upload(self, blob_name: str, document: dict[str, Any], **conditions: Any) -> None:
        from azure.storage.blob import ContentSettings

        self._ensure()
        self._container.upload_blob(
            blob_name,
            json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
            **conditions,
        )

    def read(self, blob_name: str) -> dict[str, Any] | None:
        return self.read_versioned(blob_name)[0]

    def read_versioned(self, blob_name: str) -> tuple[dict[str, Any] | None, str | None]:
        from azure.core.exceptions import ResourceNotFoundError

        self._ensure()
        try:
            downloader = self._container.download_blob(blob_name)
            data = downloader.readall()
        except ResourceNotFoundError:
            return None, None
        result: dict[str, Any] = json.loads(data)
        return result, downloader.properties.etag


def _entry(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": document["run_id"],
        "revision": document.get("revision", 0),
        "state": document["state"],
        "created_at": document.get("created_at") or "",
        "status_blob": run_status_blob_name(document["run_id"]),
    }


def _older(stored: dict[str, Any] | None, document: dict[str, Any]) -> bool:
    """Whether ``stored`` (a run's document or entry) is an older copy of ``document``'s run, or no copy."""
    if not isinstance(stored, dict) or stored.get("run_id") != document["run_id"]:
        return True
    revision = stored.get("revision")
    return not isinstance(revision, int) or revision < document.get("revision", 0)


def config_document(before: dict[str, Any] | None, run_document: dict[str, Any]) -> dict[str, Any]:
    """The config's document after ``run_document`` changed, merged into what it held ``before``.

    A copy of a run never replaces a newer one, in the run list or at the top."""
    previous = before if isinstance(before, dict) and isinstance(before.get("runs"), list) else {}
    entries = {e["run_id"]: e for e in previous.get("runs", []) if isinstance(e, dict) and "run_id" in e}
    run = run_document["run_id"]
    if _older(entries.get(run), run_document):
        entries[run] = _entry(run_document)
    runs = sorted(entries.values(), key=lambda e: (e["created_at"], e["run_id"]), reverse=True)
    latest = runs[0]["run_id"]
    previous_top = {k: v for k, v in previous.items() if k != "runs"}
    top = run_document if latest == run and _older(previous_top, run_document) else previous_top
    return {**top, "latest_run": latest, "runs": runs}


def _merge_write(
    store: StatusStore, blob_name: str, merge: Callable[[dict[str, Any] | None], dict[str, Any] | None]
) -> bool:
    """Write ``merge(current)`` conditionally, re-reading when another writer came first; None writes nothing."""
    for _ in range(MIRROR_ATTEMPTS):
        current, version = store.read_versioned(blob_name)
        document = merge(current)
        if document is None or store.write_if(blob_name, document, version):
            return True
    return False


def _changed(current: dict[str, Any] | None, merged: dict[str, Any]) -> dict[str, Any] | None:
    return None if merged == current else merged


def mirror(store: StatusStore, record: RunRecord) -> None:
    """Mirror ``record`` into its run's blob and its config's document; an older copy changes neither."""
    document = status_document(record)
    blobs = {
        run_status_blob_name(record.run_id): lambda current: document if _older(current, document) else None,
        status_blob_name(record.config_blob): lambda current: _changed(current, config_document(current, document)),
    }
    for blob_name, merge in blobs.items():
        if not _merge_write(store, blob_name, merge):
            raise ConcurrencyError(f"status blob {blob_name}: {MIRROR_ATTEMPTS} writers came first")
