"""Row and file validation of chat data: every reason counted, first problems reported with line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.platform import dataset as ds


def user(text: str = "hi") -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str = "hello") -> dict[str, str]:
    return {"role": "assistant", "content": text}


@pytest.mark.parametrize(
    ("row", "training", "reason"),
    [
        ("not a dict", False, ds.NOT_AN_OBJECT),
        ({"prompt": "x"}, False, ds.MESSAGES_MISSING),
        ({"messages": None}, False, ds.MESSAGES_MISSING),
        ({"messages": "hi"}, False, ds.MESSAGES_NOT_A_LIST),
        ({"messages": []}, False, ds.MESSAGES_EMPTY),
        ({"messages": ["hi"]}, False, ds.MESSAGE_NOT_AN_OBJECT),
        ({"messages": [{"content": "hi"}]}, False, ds.MESSAGE_NOT_AN_OBJECT),
        ({"messages": [{"role": "bot", "content": "hi"}]}, False, ds.ROLE_INVALID),
        ({"messages": [user("   ")]}, False, ds.CONTENT_EMPTY),
        ({"messages": [user(), {"role": "assistant", "content": 3}]}, False, ds.CONTENT_EMPTY),
        ({"messages": [user(), {"role": "assistant"}]}, False, ds.CONTENT_EMPTY),
        ({"messages": [user(), assistant(), user()]}, True, ds.NO_FINAL_ASSISTANT),
    ],
)
def test_row_problem_names_the_reason(row: object, training: bool, reason: str) -> None:
    problem = ds.row_problem(row, training=training)
    assert problem is not None
    assert problem[0] == reason
    assert problem[1]  # a detail for the user


def test_good_rows_pass_and_only_training_needs_a_final_answer() -> None:
    system = {"role": "system", "content": "be brief"}
    assert ds.row_problem({"messages": [system, user(), assistant()]}, training=True) is None
    # Test conversations may end with the user's turn (what the model should answer next).
    assert ds.row_problem({"messages": [user(), assistant(), user()]}, training=False) is None


def test_training_split_names() -> None:
    assert ds.is_training_split("train_sft")
    assert ds.is_training_split("train")
    assert not ds.is_training_split("test_gen")
    assert not ds.is_training_split("validation")


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_validate_chat_file_counts_reasons_with_line_numbers(tmp_path: Path) -> None:
    good = json.dumps({"messages": [user(), assistant()]})
    path = write_lines(
        tmp_path / "train.jsonl",
        [
            good,
            "{not json",
            json.dumps({"messages": [{"role": "bot", "content": "x"}]}),
            "",  # blank lines are skipped, not errors
            json.dumps({"messages": [user()]}),
            good,
        ],
    )
    report = ds.validate_chat_file(path, training=True)
    assert report.rows == 5
    assert report.good_rows == 2
    assert report.bad_rows == {ds.INVALID_JSON: 1, ds.ROLE_INVALID: 1, ds.NO_FINAL_ASSISTANT: 1}
    assert report.problems[0].startswith("line 2: invalid_json")
    assert report.problems[2].startswith("line 5: last_turn_not_assistant")
    assert not report.ok
    assert "train.jsonl" in report.summary() and "role_invalid" in report.summary()


def test_validate_chat_file_stops_after_max_errors(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps({"messages": []})] * 50)
    report = ds.validate_chat_file(path, training=False, max_errors=5)
    assert report.stopped_early
    assert report.rows == 5
    assert report.bad_rows == {ds.MESSAGES_EMPTY: 5}
    assert "stopped early" in report.summary()


def test_validate_chat_file_ok_and_json_array(tmp_path: Path) -> None:
    rows = [{"messages": [user(), assistant()]}] * 3
    lines = write_lines(tmp_path / "ok.jsonl", [json.dumps(r) for r in rows])
    array = tmp_path / "ok.json"
    array.write_text(json.dumps(rows), encoding="utf-8")
    for path in (lines, array):
        report = ds.validate_chat_file(path, training=True)
        assert report.ok, report.summary()
        assert report.good_rows == 3


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.jsonl", None, "file not found"),
        ("data.csv", "a,b\n", "expected a .jsonl file"),
        ("empty.jsonl", "", "no conversations"),
    ],
)
def test_validate_chat_file_whole_file_problems(tmp_path: Path, name: str, content: str | None, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    report = ds.validate_chat_file(path, training=True)
    assert not report.ok
    assert expected in report.summary()


def test_prepare_report_summary_lines() -> None:
    split = ds.SplitReport("train_sft", rows_in=10, rows_written=8)
    split.count_bad(ds.ROLE_INVALID, 3)
    split.count_bad(ds.ROLE_INVALID, 7)
    report = ds.PrepareReport("my/data", Path("/out"), 50.0, {"train_sft": split})
    lines = report.summary_lines()
    assert "first 50% of each split" in lines[0]
    assert "train_sft: 8 of 10 rows written, 2 bad rows left out" in lines[1]
    assert "2 x role_invalid" in lines[2] and "rows 3, 7" in lines[2]
    assert report.rows_bad == 2 and report.rows_written == 8


@pytest.mark.parametrize("pc", [0, -5, 101, float("nan")])
def test_prepare_dataset_refuses_bad_percentages(tmp_path: Path, pc: float) -> None:
    with pytest.raises(ds.DatasetError, match="split_pc"):
        ds.prepare_dataset(str(tmp_path), tmp_path / "out", pc)
