"""The twin's state files: one type per file, a schema version checked on every read, the keys that were
written and no others, atomic replacement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest

from local.common.statefiles import StateFile, StateFileError, write_json_atomic


class Record(StateFile):
    schema_version: Literal[1] = 1
    name: str
    count: int = 0
    note: str | None = None


def test_a_record_round_trips_with_its_version_and_only_the_fields_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    Record(name="a").save(path)
    assert json.loads(path.read_text()) == {"schema_version": 1, "name": "a"}
    again = Record.load(path)
    assert again == Record(name="a")
    assert again is not None
    again.changed(count=2, note=None).save(path)
    assert json.loads(path.read_text()) == {"schema_version": 1, "name": "a", "count": 2, "note": None}
    assert Record.load(tmp_path / "missing.json") is None


def test_another_schema_version_is_refused_by_file_and_version(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    for version in (2, None):
        write_json_atomic(path, {"schema_version": version, "name": "a"})
        with pytest.raises(StateFileError, match=rf"record.json: schema version {version!r}; this app reads 1"):
            Record.load(path)


def test_a_field_out_of_shape_is_named(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    write_json_atomic(path, {"schema_version": 1, "name": "a", "count": "many"})
    with pytest.raises(StateFileError, match=r"record\.json: count: "):
        Record.load(path)
    with pytest.raises(ValueError, match="cuont"):
        Record(name="a").changed(cuont=1)  # a misspelt field is an error, not a new key


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    Record(name="a" * 10_000).save(path)
    Record(name="b").save(path)
    assert Record.load(path) == Record(name="b")
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary file left behind
