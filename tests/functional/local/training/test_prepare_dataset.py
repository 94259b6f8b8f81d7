"""prepare_dataset on the committed sample and on files with bad rows (datasets.load_dataset, real files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.platform import dataset as ds
from tests.functional.local.training.helpers import SAMPLE, read_rows

SPLITS = {"test_gen": 40, "test_sft": 40, "train_gen": 40, "train_sft": 320}


def test_committed_sample_prepares_without_bad_rows(tmp_path: Path) -> None:
    events: list[dict] = []
    report = ds.prepare_dataset(str(SAMPLE), tmp_path / "out", 100, progress=events.append)
    assert {name: s.rows_written for name, s in report.splits.items()} == SPLITS
    assert report.rows_bad == 0
    assert [e["split"] for e in events] == sorted(SPLITS)
    for split in SPLITS:
        assert read_rows(tmp_path / "out" / f"{split}.jsonl") == read_rows(SAMPLE / f"{split}.jsonl")
        assert ds.validate_chat_file(tmp_path / "out" / f"{split}.jsonl", training=split.startswith("train")).ok


def test_percentage_slices_take_the_first_rows_of_every_split(tmp_path: Path) -> None:
    report = ds.prepare_dataset(str(SAMPLE), tmp_path, 5)
    assert {name: s.rows_in for name, s in report.splits.items()} == {k: v // 20 for k, v in SPLITS.items()}
    assert read_rows(tmp_path / "train_sft.jsonl") == read_rows(SAMPLE / "train_sft.jsonl")[:16]
    # Fractional percentages are honoured too (cut after loading).
    fine = ds.prepare_dataset(str(SAMPLE / "train_sft.jsonl"), tmp_path / "fine", 2.5)
    assert fine.splits["train_sft"].rows_written == 8


def test_bad_rows_are_counted_per_reason_and_left_out(tmp_path: Path) -> None:
    good = {
        "prompt": "p",
        "prompt_id": "x",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
    }
    rows = [
        good,
        {**good, "messages": []},
        {**good, "messages": [{"role": "robot", "content": "beep"}]},
        {**good, "messages": [{"role": "user", "content": "unanswered"}]},
        {**good, "messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]},
        {**good, "messages": [{"role": "user", "content": "unanswered again"}]},
        good,
    ]
    source = tmp_path / "src"
    source.mkdir()
    for split in ("train", "test"):
        (source / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = ds.prepare_dataset(str(source), tmp_path / "out", 100)

    train = report.splits["train"]
    assert (train.rows_in, train.rows_written) == (7, 2)
    assert train.bad_rows == {
        ds.MESSAGES_EMPTY: 1,
        ds.ROLE_INVALID: 1,
        ds.NO_FINAL_ASSISTANT: 2,
        ds.CONTENT_EMPTY: 1,
    }
    assert train.bad_examples[ds.NO_FINAL_ASSISTANT] == [3, 5]
    # Outside training, a conversation may end with the user's turn.
    test = report.splits["test"]
    assert test.rows_written == 4 and ds.NO_FINAL_ASSISTANT not in test.bad_rows
    assert read_rows(tmp_path / "out" / "train.jsonl") == [good, good]
    text = "\n".join(report.summary_lines())
    assert "train: 2 of 7 rows written, 5 bad rows left out" in text
    assert "2 x last_turn_not_assistant" in text and "rows 3, 5" in text


def test_rows_arrow_cannot_load_are_counted_too(tmp_path: Path) -> None:
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    source = tmp_path / "src"
    source.mkdir()
    lines = [json.dumps(good), "{not json", json.dumps({"messages": "just text"}), json.dumps(good)]
    (source / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = ds.prepare_dataset(str(source), tmp_path / "out", 100)
    train = report.splits["train"]
    assert (train.rows_in, train.rows_written) == (4, 2)
    assert train.bad_rows == {ds.INVALID_JSON: 1, ds.MESSAGES_NOT_A_LIST: 1}


def test_unusable_inputs_raise_dataset_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ds.DatasetError, match="holds no"):
        ds.prepare_dataset(str(empty), tmp_path / "out", 10)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "train.jsonl").write_text("{}\n", encoding="utf-8")
    (mixed / "test.csv").write_text("a\n1\n", encoding="utf-8")
    with pytest.raises(ds.DatasetError, match="mixes file formats"):
        ds.prepare_dataset(str(mixed), tmp_path / "out", 10)
