"""Status blobs never go back: two writers of one run that mirror out of order leave the newer copy.

The race CI met: cleanup deleted a run (ledger write, then mirror) while a timer's update of the same run, written
to the ledger just before, mirrored just after, and the status said ``deployed`` for good. Run on the in-memory
store and on a real blob container over Azurite, which hold the same contract (``write_if``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.ledger.record import RunRecord
from shared.naming import run_status_blob_name, status_blob_name
from shared.states import RunState
from shared.status import BlobStatusStore, StatusStore, mirror
from tests.fakes import InMemoryStatusStore

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", pytest.param("blob", marks=pytest.mark.azurite)])
def store(request: pytest.FixtureRequest) -> Iterator[StatusStore]:
    if request.param == "memory":
        yield InMemoryStatusStore()
    else:
        azurite = request.getfixturevalue("azurite")
        yield BlobStatusStore(azurite, f"status{uuid.uuid4().hex[:12]}")


def copy_of(run_id: str, state: RunState, revision: int, minute: int = 0) -> RunRecord:
    created = T0.replace(minute=minute)
    return RunRecord(
        run_id, state, "team/phi3.yaml", "team-phi3", created, created, revision=revision, endpoint_name="ep"
    )


def test_write_if_holds_the_contract(store: StatusStore) -> None:
    assert store.read_versioned("a.json") == (None, None)
    assert store.write_if("a.json", {"n": 1}, None)
    assert not store.write_if("a.json", {"n": 2}, None)  # "only if absent" loses to the first writer
    document, version = store.read_versioned("a.json")
    assert document == {"n": 1} and version is not None
    assert store.write_if("a.json", {"n": 3}, version)
    assert not store.write_if("a.json", {"n": 4}, version)  # the version moved on
    assert store.read("a.json") == {"n": 3}


def test_an_older_copy_mirrored_last_changes_neither_blob(store: StatusStore) -> None:
    mirror(store, copy_of("phi3-1", RunState.DELETED, revision=7))
    mirror(store, copy_of("phi3-1", RunState.DEPLOYED, revision=6))  # the timer's update, late
    assert (store.read(run_status_blob_name("phi3-1")) or {})["state"] == "deleted"
    config = store.read(status_blob_name("team/phi3.yaml")) or {}
    assert config["state"] == "deleted" and config["runs"][0]["state"] == "deleted"
    mirror(store, copy_of("phi3-1", RunState.DELETED, revision=8))  # a newer copy still lands
    assert (store.read(run_status_blob_name("phi3-1")) or {})["revision"] == 8


def test_an_older_copy_of_one_run_does_not_take_back_the_entry_while_another_run_is_latest(
    store: StatusStore,
) -> None:
    mirror(store, copy_of("phi3-1", RunState.DELETED, revision=7))
    mirror(store, copy_of("phi3-2", RunState.SUBMITTED, revision=2, minute=5))  # a later drop of the config
    mirror(store, copy_of("phi3-1", RunState.DEPLOYED, revision=6))
    config = store.read(status_blob_name("team/phi3.yaml")) or {}
    assert config["latest_run"] == "phi3-2" and config["state"] == "submitted"
    assert {e["run_id"]: e["state"] for e in config["runs"]} == {"phi3-1": "deleted", "phi3-2": "submitted"}


class Interleaved(InMemoryStatusStore):
    """Another run's mirror lands between this writer's read of the config document and its write."""

    def __init__(self, other: RunRecord) -> None:
        super().__init__()
        self.other: RunRecord | None = other
        self.lost = 0

    def write_if(self, blob_name: str, document: dict[str, Any], version: str | None) -> bool:
        if self.other is not None and blob_name == status_blob_name(self.other.config_blob):
            other, self.other = self.other, None
            mirror(self, other)
        won = super().write_if(blob_name, document, version)
        self.lost += not won
        return won


def test_a_writer_that_loses_the_race_re_reads_and_keeps_both_runs() -> None:
    store = Interleaved(other=copy_of("phi3-2", RunState.SUBMITTED, revision=2, minute=5))
    mirror(store, copy_of("phi3-1", RunState.DEPLOYED, revision=4))
    assert store.lost >= 1  # the interleaving really happened
    config = store.read(status_blob_name("team/phi3.yaml")) or {}
    assert {e["run_id"] for e in config["runs"]} == {"phi3-1", "phi3-2"}
    assert config["latest_run"] == "phi3-2"
