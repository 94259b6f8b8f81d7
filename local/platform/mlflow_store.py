"""The workspace's MLflow store comes into being whole, or not at all.

MLflow creates a SQLite store's schema on first use: about sixty alembic migrations, some of which rebuild
a table through a ``_alembic_tmp_<table>`` copy, and none of which SQLite runs in one transaction. A process
killed in the middle (the chaos benchmark's SIGKILL of a starting job, or a laptop's power) leaves a
half-migrated ``mlflow.db``; every later user then fails ("table _alembic_tmp_experiments already exists",
"Detected out-of-date database schema"), and no retry or restart helps.

So the schema is built in a file of its own name and renamed into place once complete: ``mlflow.db`` either
does not exist or holds the whole schema. A creation killed half-way leaves only its ``.creating-*`` file,
which the next creation deletes. Callers hold the workspace's schema lock (``mlflow_retry.first_use``), so
one process creates and the others find it done.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from urllib.parse import unquote

log = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"  # SQLAlchemy form: the file name follows (absolute when it starts with "/")
CREATING_MARK = ".creating-"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file a ``sqlite:///`` tracking URI names; None for any other store."""
    if not tracking_uri.startswith(SQLITE_PREFIX) or len(tracking_uri) == len(SQLITE_PREFIX):
        return None
    return Path(unquote(tracking_uri[len(SQLITE_PREFIX) :].split("?", 1)[0]))


def create_once(tracking_uri: str) -> bool:
    """Create the SQLite store ``tracking_uri`` names, complete, if it does not exist yet; True if created here.

    The caller holds the schema lock. A store that is not SQLite, or already exists, is left to MLflow."""
    db = sqlite_path(tracking_uri)
    if db is None or db.exists():
        return False
    db.parent.mkdir(parents=True, exist_ok=True)
    for leftover in db.parent.glob(db.name + CREATING_MARK + "*"):  # a creation killed half-way
        log.warning("MLflow store: discarding %s, left by a creation that did not finish", leftover.name)
        leftover.unlink(missing_ok=True)
    # A name never used before: MLflow caches an engine per URI for the life of the process.
    partial = db.with_name(f"{db.name}{CREATING_MARK}{uuid.uuid4().hex[:12]}")
    query = tracking_uri.split("?", 1)[1] if "?" in tracking_uri else ""
    _build_schema(f"{SQLITE_PREFIX}{partial}" + (f"?{query}" if query else ""), artifact_root_beside(db))
    _fsync(partial)
    os.replace(partial, db)
    _fsync(db.parent)
    log.info("MLflow store created at %s", db)
    return True


def artifact_root_beside(db: Path) -> str:
    """Where the store's experiments keep artifacts, its default one included: beside the store (MLflow's own
    default is relative to the working directory of whichever process created the experiment)."""
    return (db.parent / "mlartifacts").resolve().as_uri()


def _build_schema(uri: str, artifact_root: str) -> None:
    """Both stores MLflow keeps in the file, tracking and model registry, migrated to MLflow's head."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    tracking = TrackingStore(uri, artifact_root)
    registry = RegistryStore(uri)
    for store in (tracking, registry):
        type(store)._engine_map.pop(uri, None)  # the file is about to be renamed: no cached engine may outlive it
        store.engine.dispose()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
