"""``champion`` and ``challenger`` on the local platform are MLflow's own registered-model aliases, on the
real MLflow registry (SQLite): set, moved from version to version, removed, and read back by MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.platform.registry import Registry
from local.platform.workspace import Workspace
from shared.exceptions import NotManagedError


def managed(run: str) -> dict[str, str]:
    return {"autopilot_run_id": run, "autopilot_managed": "true"}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(Workspace(tmp_path / "work"))


def register(registry: Registry, tmp_path: Path, run: str, tags: dict[str, str] | None = None) -> str:
    source = tmp_path / run
    source.mkdir()
    (source / "MLmodel").write_text("flavors: {}\n")
    ref, _ = registry.register(
        name="line-model", source=source, mlflow_run_id=None, tags=tags or managed(run), description=run
    )
    return ref.version


def test_aliases_are_mlflows_and_move_between_versions(registry: Registry, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    v1 = register(registry, tmp_path, "line-v1-0000aaaa")
    v2 = register(registry, tmp_path, "line-v2-0000bbbb")
    assert registry.aliases("line-model") == {}
    registry.set_alias("line-model", "champion", v1)
    registry.set_alias("line-model", "challenger", v2)
    assert registry.aliases("line-model") == {"champion": v1, "challenger": v2}

    registry.set_alias("line-model", "champion", v2)  # promoted: the alias moves, v1 keeps none
    registry.delete_alias("line-model", "challenger")
    registry.delete_alias("line-model", "challenger")  # nothing left to remove: no error
    assert registry.aliases("line-model") == {"champion": v2}

    # What any MLflow user sees in the same store (`mlflow ui`, models:/line-model@champion).
    uri = registry.workspace.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias("line-model", "champion").version) == v2
    assert client.get_model_version("line-model", v1).aliases == []


def test_a_version_the_app_did_not_register_gets_no_alias(registry: Registry, tmp_path: Path) -> None:
    theirs = register(registry, tmp_path, "someone-0000cccc", tags={"owner": "someone"})
    with pytest.raises(NotManagedError):
        registry.set_alias("line-model", "champion", theirs)
    assert registry.aliases("line-model") == {}


def test_a_model_never_registered_has_no_aliases(registry: Registry) -> None:
    assert registry.aliases("no-such-model") == {}
