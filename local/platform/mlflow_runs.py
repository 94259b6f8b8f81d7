"""A local job's MLflow bookkeeping outside the recipe: the experiment its events name, and the end of a run
whose job cannot end it itself (killed, or canceled by the platform; without this the run would show RUNNING
in the tracking store for ever)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from local.platform.mlflow_retry import first_use, retry_locked
from local.platform.stopping import deferred_cancel

log = logging.getLogger(__name__)


def end_run(tracking_uri: str, job_name: str, run_id: str | None, end: str) -> None:
    """Mark ``run_id`` ``end`` (FAILED, KILLED) if it still runs. Bookkeeping: a failure is logged, not raised
    (the ledger already knows how the job ended)."""
    if not run_id:
        return
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        if retry_locked(lambda: client.get_run(run_id).info.status) == "RUNNING":
            retry_locked(lambda: client.set_terminated(run_id, status=end))
    except Exception as exc:
        log.warning("job %s: could not end MLflow run %s as %s: %s", job_name, run_id, end, exc)


def experiment_id(tracking_uri: str, name: str, locks: Path) -> str:
    """The id of experiment ``name``, created as the recipe would (artifacts beside the store) if missing."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from local.platform.training.tracking import artifact_root_for

    def open_store() -> tuple[Any, Any]:
        # Constructing the client already opens the store (creating or migrating its schema): inside the lock.
        client = MlflowClient(tracking_uri=tracking_uri)
        return client, client.get_experiment_by_name(name)

    with deferred_cancel():  # a write cut in half would hold the store's lock (see stopping.py)
        client, experiment = first_use(locks, tracking_uri, open_store)
        if experiment is None:
            try:
                created = retry_locked(
                    lambda: client.create_experiment(name, artifact_location=artifact_root_for(tracking_uri))
                )
                return str(created)
            except MlflowException:  # another job created it meanwhile
                experiment = retry_locked(lambda: client.get_experiment_by_name(name))
    return str(experiment.experiment_id) if experiment is not None else "local"
