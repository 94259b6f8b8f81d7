"""Status blobs for the person who dropped a config, in the status container:

- ``_runs/<run id>.json``: one per run, the run as the ledger has it;
- ``<config path>.json`` (``team/phi3.yaml.json``): the config's document: the latest run's status at the top
  level (``latest_run`` names it) and ``runs``, every run of that path, newest first. "Latest" is the run
  received last (``created_at``), so a superseded run that is still writing never takes the document back.

Writes are read-merge-write on the config document; the ledger is the truth, and each run's next change
rewrites its own entry.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Protocol

from shared.ledger.parts import errors_to_json
from shared.ledger.record import RunRecord, params_to_json
from shared.naming import run_status_blob_name, status_blob_name
from shared.states import RunState
from shared.storage import StorageConnection, as_connection


class StatusStore(Protocol):
    def write(self, blob_name: str, document: dict[str, Any]) -> None:
        """Write (overwrite) the status document at ``blob_name``."""

    def read(self, blob_name: str) -> dict[str, Any] | None:
        """The document, or None."""


def status_document(record: RunRecord) -> dict[str, Any]:
    """What the person who dropped the config sees. Built from the ledger; holds no key or URL with a key."""
    # As OpenAI's job object: an estimated finish only while the job runs.
    estimate = record.estimated_finish if record.state in (RunState.SUBMITTED, RunState.RUNNING) else None
    return {
        "run_id": record.run_id,
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
        "trained_tokens": record.trained_tokens,
        "loss_curve": record.loss_curve,
        "estimated_finish": estimate.isoformat() if estimate else None,
        "smoke_test": record.smoke_test.to_json() if record.smoke_test else None,
        "effective_params": params_to_json(record.effective_params) if record.effective_params else None,
        "notes": record.notes,
        "approval": record.approval.to_json() if record.approval else None,
        # A rollout on a shared endpoint (canary share, window, error rates seen, outcome); see canary.py.
        "rollout": record.rollout.to_json() if record.rollout else None,
        "awaiting": awaiting(record),
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
        from azure.storage.blob import ContentSettings

        self._ensure()
        self._container.upload_blob(
            blob_name,
            json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )

    def read(self, blob_name: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        self._ensure()
        try:
            data = self._container.download_blob(blob_name).readall()
        except ResourceNotFoundError:
            return None
        result: dict[str, Any] = json.loads(data)
        return result


def _entry(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": document["run_id"],
        "state": document["state"],
        "created_at": document.get("created_at") or "",
        "status_blob": run_status_blob_name(document["run_id"]),
    }


def config_document(before: dict[str, Any] | None, run_document: dict[str, Any]) -> dict[str, Any]:
    """The config's document after ``run_document`` changed, merged into what it held ``before``."""
    previous = before if isinstance(before, dict) and isinstance(before.get("runs"), list) else {}
    entries = {e["run_id"]: e for e in previous.get("runs", []) if isinstance(e, dict) and "run_id" in e}
    entries[run_document["run_id"]] = _entry(run_document)
    runs = sorted(entries.values(), key=lambda e: (e["created_at"], e["run_id"]), reverse=True)
    latest = runs[0]["run_id"]
    top = run_document if latest == run_document["run_id"] else {k: v for k, v in previous.items() if k != "runs"}
    return {**top, "latest_run": latest, "runs": runs}


def mirror(store: StatusStore, record: RunRecord) -> None:
    document = status_document(record)
    store.write(run_status_blob_name(record.run_id), document)
    index = status_blob_name(record.config_blob)
    store.write(index, config_document(store.read(index), document))
