"""Finding 4: one status blob per run, and at the config's path a document naming its latest run."""

from __future__ import annotations

from pathlib import Path

from shared.naming import run_status_blob_name, status_blob_name
from shared.services.submit import submit_config
from shared.states import RunState
from tests.configs import config_bytes
from tests.fakes import FakeClock, FakePlatform, make_store


def _drop(world, name: str, content: bytes):  # type: ignore[no-untyped-def]
    store, platform = world
    return submit_config(
        container="training-configs",
        blob_name=name,
        content=content,
        etag=None,
        store=store,
        platform=platform,
        data_root=Path("."),
    )


def test_configs_differing_only_by_extension_never_share_a_status_blob() -> None:
    # Before: coll.json (rejected) and coll.yaml (submitted) both wrote training-status/coll.json.
    clock = FakeClock()
    store, _, status = make_store(clock)
    world = (store, FakePlatform(clock))
    good = _drop(world, "coll.yaml", config_bytes())
    bad = _drop(world, "coll.json", b'{"model": 1}')
    assert good is not None and bad is not None
    assert status.read(status_blob_name("coll.yaml"))["state"] == "submitted"  # type: ignore[index]
    assert status.read(status_blob_name("coll.json"))["state"] == "rejected"  # type: ignore[index]
    assert status.read(run_status_blob_name(good.run_id))["run_id"] == good.run_id  # type: ignore[index]
    assert status.read(run_status_blob_name(bad.run_id))["state"] == "rejected"  # type: ignore[index]


def test_an_overwrite_names_the_new_run_and_the_old_one_never_takes_the_document_back() -> None:
    # Before: the config's blob flipped between the two runs with every write and ended on the superseded one.
    clock = FakeClock()
    store, _, status = make_store(clock)
    world = (store, FakePlatform(clock))
    first = _drop(world, "c5.yaml", config_bytes())
    clock.advance(minutes=1)
    second = _drop(world, "c5.yaml", config_bytes(training={"learning_rate": 1e-5}))
    assert first is not None and second is not None and first.run_id != second.run_id
    store.advance(first.run_id, RunState.RUNNING)  # the superseded run keeps writing
    store.advance(first.run_id, RunState.COMPLETED)
    doc = status.read(status_blob_name("c5.yaml"))
    assert doc is not None
    assert doc["latest_run"] == second.run_id and doc["run_id"] == second.run_id and doc["state"] == "submitted"
    assert [(r["run_id"], r["state"]) for r in doc["runs"]] == [
        (second.run_id, "submitted"),
        (first.run_id, "completed"),
    ]
    assert status.read(run_status_blob_name(first.run_id))["state"] == "completed"  # type: ignore[index]


def test_an_overwritten_config_ends_with_one_endpoint_the_newest_runs() -> None:
    # Policy (README, "status blobs"): the newest bytes win; the older run's endpoint goes once the newer deploys.
    from datetime import timedelta

    from shared.services.reconcile import reconcile

    clock = FakeClock()
    store, _, status = make_store(clock)
    platform = FakePlatform(clock)
    world = (store, platform)
    older = _drop(world, "c5.yaml", config_bytes())
    clock.advance(minutes=1)
    newer = _drop(world, "c5.yaml", config_bytes(training={"learning_rate": 1e-5}))
    assert older is not None and newer is not None

    def to_deployed(run: str) -> None:
        platform.finish_job(run)
        for _ in range(3):
            reconcile(store, platform, deploy_timeout=timedelta(hours=1))
            platform.complete_deployments()

    to_deployed(older.run_id)
    assert store.get(older.run_id).state == RunState.DEPLOYED  # type: ignore[union-attr]  # serves meanwhile
    to_deployed(newer.run_id)
    after_old, after_new = store.get(older.run_id), store.get(newer.run_id)
    assert after_new is not None and after_new.state == RunState.DEPLOYED
    assert after_old is not None and after_old.state == RunState.DELETED
    assert f"superseded by run {newer.run_id}" in after_old.notes[-1]
    assert list(platform.endpoints) == [after_new.endpoint_name]
    assert status.read(status_blob_name("c5.yaml"))["latest_run"] == newer.run_id  # type: ignore[index]
