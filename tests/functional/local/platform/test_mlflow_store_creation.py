"""A process killed while it creates the workspace's MLflow store leaves no half-migrated ``mlflow.db``.

Found by the chaos benchmark (issue 22, finding A): a job SIGKILLed during MLflow's first-use migration left
``platform/mlflow.db`` with an ``_alembic_tmp_experiments`` table, and every later MLflow user of the
workspace failed. Here a real process is killed at that very statement, then the store is used again."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from local.platform.mlflow_runs import experiment_id
from local.platform.mlflow_store import create_once, sqlite_path
from local.platform.registry import Registry
from local.platform.workspace import Workspace, child_env

# Runs the registry's first use in a process that SIGKILLs itself right after alembic creates a rebuilt
# table's temporary copy: the moment the chaos run caught.
KILLED_MID_MIGRATION = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "after_cursor_execute")
    def die_mid_migration(conn, cursor, statement, *args):
        if "CREATE TABLE _alembic_tmp_" in statement:
            os.kill(os.getpid(), signal.SIGKILL)

    from local.platform.registry import Registry
    from local.platform.workspace import Workspace
    Registry(Workspace(Path(sys.argv[1]))).client
    """
)


def test_a_creation_killed_mid_migration_leaves_the_store_usable(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_MIGRATION, str(workdir)], env=child_env(), capture_output=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    workspace = Workspace(workdir)
    assert not workspace.mlflow_db.exists(), "the store is in place before its schema is complete"
    assert list(workspace.root.glob("mlflow.db.creating-*")), "the killed creation's file should be left over"

    # The next user creates the store afresh and both of MLflow's stores work in it.
    client = Registry(workspace).client
    client.create_registered_model("after-the-kill")
    assert [m.name for m in client.search_registered_models()] == ["after-the-kill"]
    assert experiment_id(workspace.tracking_uri, "jobs", workspace.locks) not in ("", "local")
    assert not list(workspace.root.glob("mlflow.db.creating-*")), "the leftover was not discarded"
    with sqlite3.connect(workspace.mlflow_db) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not [t for t in tables if t.startswith("_alembic_tmp_")]


def test_the_store_is_created_once_and_then_left_to_mlflow(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "work")
    workspace.ensure()
    assert create_once(workspace.tracking_uri) is True
    created = workspace.mlflow_db.stat()
    assert create_once(workspace.tracking_uri) is False
    assert workspace.mlflow_db.stat().st_ino == created.st_ino
    # The default experiment keeps its artifacts beside the store, as the platform's own experiments do.
    from mlflow import MlflowClient

    default = MlflowClient(tracking_uri=workspace.tracking_uri).get_experiment("0")
    assert default.artifact_location == workspace.artifacts.resolve().as_uri() + "/0"


def test_only_sqlite_uris_name_a_file() -> None:
    assert sqlite_path("sqlite:////tmp/w/mlflow.db?timeout=30") == Path("/tmp/w/mlflow.db")
    assert sqlite_path("sqlite:///relative.db") == Path("relative.db")
    assert sqlite_path("http://127.0.0.1:5000") is None
    assert sqlite_path("sqlite:///") is None
    assert create_once("http://127.0.0.1:5000") is False
