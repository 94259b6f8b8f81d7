"""Dataset preparation (the seed's ``download-dataset.py`` made real) and chat-file validation.

``prepare_dataset`` loads a Hugging Face hub dataset or local files with ``datasets.load_dataset``, takes the
first ``split_pc`` percent of every split (the seed's ``split=f"{split}[:{pc}%]"``), checks every row and
writes the good rows to ``<out>/<split>.jsonl``. Bad rows are left out of the files but counted per reason
and reported, with example row numbers, never dropped silently.

A row is good when ``messages`` is a non-empty list of ``{"role": "user"|"assistant"|"system",
"content": <non-empty text>}``; in training splits (names starting with ``train``) the conversation must
also end with an assistant turn, since that is the text the model learns to write.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ROLES = ("user", "assistant", "system")
EXAMPLES_PER_REASON = 5
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}

# Reasons a row is bad; the keys of every ``bad_rows`` mapping.
NOT_AN_OBJECT = "row_not_an_object"
INVALID_JSON = "invalid_json"
MESSAGES_MISSING = "messages_missing"
MESSAGES_NOT_A_LIST = "messages_not_a_list"
MESSAGES_EMPTY = "messages_empty"
MESSAGE_NOT_AN_OBJECT = "message_not_an_object"
ROLE_INVALID = "role_invalid"
CONTENT_EMPTY = "content_empty"
NO_FINAL_ASSISTANT = "last_turn_not_assistant"

REASON_TEXT = {
    NOT_AN_OBJECT: "the row is not a JSON object",
    INVALID_JSON: "the line is not valid JSON",
    MESSAGES_MISSING: "no `messages` field",
    MESSAGES_NOT_A_LIST: "`messages` is not a list",
    MESSAGES_EMPTY: "`messages` is empty",
    MESSAGE_NOT_AN_OBJECT: "a message is not an object with `role` and `content`",
    ROLE_INVALID: f"a message role is not one of {', '.join(ROLES)}",
    CONTENT_EMPTY: "a message has empty or non-text `content`",
    NO_FINAL_ASSISTANT: "a training conversation must end with an assistant turn",
}


class DatasetError(ValueError):
    """The dataset cannot be loaded or prepared; the message says which input to fix."""


def is_training_split(split: str) -> bool:
    """Splits whose conversations are learned from (``train``, ``train_sft``, ``train_gen``...)."""
    return split.lower().startswith("train")


def row_problem(row: Any, *, training: bool) -> tuple[str, str] | None:
    """``(reason, detail)`` for the first problem of a row, or ``None`` when it is a usable conversation."""
    if not isinstance(row, dict):
        return NOT_AN_OBJECT, f"got {type(row).__name__}"
    if "messages" not in row or row["messages"] is None:
        return MESSAGES_MISSING, "the row has no `messages`"
    messages = row["messages"]
    if not isinstance(messages, list):
        return MESSAGES_NOT_A_LIST, f"`messages` is {type(messages).__name__}"
    if not messages:
        return MESSAGES_EMPTY, "`messages` is []"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            return MESSAGE_NOT_AN_OBJECT, f"messages[{i}] is not an object with a role"
        if message["role"] not in ROLES:
            return ROLE_INVALID, f"messages[{i}].role is {str(message['role'])[:40]!r}"
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            return CONTENT_EMPTY, f"messages[{i}].content is empty or not text"
    if training and messages[-1]["role"] != "assistant":
        return NO_FINAL_ASSISTANT, f"the last message is from {messages[-1]['role']!r}"
    return None


@dataclass
class SplitReport:
    """What happened to one split: rows read, rows written, bad rows per reason with example row numbers."""

    split: str
    rows_in: int = 0
    rows_written: int = 0
    bad_rows: dict[str, int] = field(default_factory=dict)
    bad_examples: dict[str, list[int]] = field(default_factory=dict)
    path: Path | None = None

    def count_bad(self, reason: str, index: int) -> None:
        self.bad_rows[reason] = self.bad_rows.get(reason, 0) + 1
        examples = self.bad_examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(index)

    @property
    def rows_bad(self) -> int:
        return sum(self.bad_rows.values())


@dataclass
class PrepareReport:
    """The outcome of ``prepare_dataset``: one ``SplitReport`` per split, in the dataset's order."""

    dataset: str
    out_dir: Path
    split_pc: float
    splits: dict[str, SplitReport] = field(default_factory=dict)

    @property
    def rows_written(self) -> int:
        return sum(s.rows_written for s in self.splits.values())

    @property
    def rows_bad(self) -> int:
        return sum(s.rows_bad for s in self.splits.values())

    def summary_lines(self) -> list[str]:
        """Human-readable lines for the CLI: one per split, then one per kind of bad row."""
        lines = [f"dataset {self.dataset}: first {self.split_pc:g}% of each split -> {self.out_dir}"]
        for report in self.splits.values():
            lines.append(
                f"  {report.split}: {report.rows_written} of {report.rows_in} rows written"
                + (f", {report.rows_bad} bad rows left out" if report.rows_bad else "")
            )
            for reason, count in sorted(report.bad_rows.items()):
                rows = ", ".join(str(i) for i in report.bad_examples.get(reason, []))
                lines.append(f"    {count} x {reason} ({REASON_TEXT.get(reason, reason)}); rows {rows}")
        return lines


ProgressFn = Callable[[dict[str, Any]], None]


def prepare_dataset(
    dataset: str, out_dir: Path, split_pc: float, *, progress: ProgressFn | None = None
) -> PrepareReport:
    """Load every split of ``dataset``, slice ``split_pc`` percent, validate rows, write ``<split>.jsonl``."""
    if not isinstance(split_pc, int | float) or not 0 < split_pc <= 100 or math.isnan(split_pc):
        raise DatasetError(f"split_pc must be a percentage in (0, 100], got {split_pc!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = PrepareReport(dataset=dataset, out_dir=out_dir, split_pc=float(split_pc))
    for split, rows in _load_splits(dataset, split_pc):
        if progress:
            progress({"phase": "split", "split": split})
        split_report = _write_split(split, rows, out_dir / f"{split}.jsonl")
        report.splits[split] = split_report
        logger.info(
            "prepared split %s: %s of %s rows written, bad rows %s",
            split,
            split_report.rows_written,
            split_report.rows_in,
            split_report.bad_rows,
        )
    if not report.splits:
        raise DatasetError(f"dataset {dataset!r} has no splits")
    return report


def _write_split(split: str, rows: Iterable[Any], path: Path) -> SplitReport:
    report = SplitReport(split=split, path=path)
    training = is_training_split(split)
    staging = path.with_name(f".{path.name}.tmp")
    with staging.open("w", encoding="utf-8") as out:
        for index, row in enumerate(rows):
            report.rows_in += 1
            problem = (INVALID_JSON, "") if row is INVALID_ROW else row_problem(row, training=training)
            if problem:
                report.count_bad(problem[0], index)
                continue
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            report.rows_written += 1
    os.replace(staging, path)
    return report


def _slice_spec(split: str, split_pc: float) -> str:
    if float(split_pc) == 100:
        return split
    if float(split_pc).is_integer():
        return f"{split}[:{int(split_pc)}%]"
    # datasets' percent slices take whole numbers only; finer slices are cut after loading.
    return split


def _load_splits(dataset: str, split_pc: float) -> Iterator[tuple[str, Iterable[Any]]]:
    path = Path(dataset).expanduser()
    if path.exists():
        builder, data_files = _local_data_files(path)
        for split, file in data_files.items():
            yield split, _load_local_split(builder, split, Path(file), split_pc)
        return
    import datasets

    try:
        split_names = datasets.get_dataset_split_names(dataset)
    except Exception as exc:  # the hub client raises many types; the user needs the name and the cause
        raise DatasetError(
            f"dataset {dataset!r} is neither a local path nor a reachable hub dataset "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    for split in split_names:
        try:
            ds = datasets.load_dataset(dataset, split=_slice_spec(split, split_pc))
        except Exception as exc:
            raise DatasetError(
                f"cannot read split {split!r} of {dataset!r} ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        yield split, _first_pc(ds, split_pc)


def _load_local_split(builder: str, split: str, file: Path, split_pc: float) -> Iterable[Any]:
    import datasets

    try:
        ds = datasets.load_dataset(builder, data_files={split: str(file)}, split=_slice_spec(split, split_pc))
    except Exception as exc:
        if builder != "json":
            raise DatasetError(f"cannot read {file} ({type(exc).__name__}: {str(exc)[:200]})") from None
        # Arrow wants one schema per file: a line that is not JSON, or a field that is a list in one row and
        # text in another, fails the whole load. Those are exactly the bad rows to count, so read row by row.
        logger.info("reading %s row by row: %s", file, type(exc).__name__)
        rows = [row for _, row in iter_rows(file)]
        return rows[: round(len(rows) * float(split_pc) / 100)]
    return _first_pc(ds, split_pc)


def _first_pc(ds: Any, split_pc: float) -> Iterable[Any]:
    if float(split_pc).is_integer():
        return iter(ds)  # already sliced by the split string, as the seed does
    return iter(ds.select(range(round(len(ds) * float(split_pc) / 100))))


def _local_data_files(path: Path) -> tuple[str, dict[str, str]]:
    """``(builder, {split: file})`` for a file or a directory of ``<split>.<ext>`` files of one format."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in LOCAL_FORMATS)
    if not files:
        raise DatasetError(f"{path} holds no {', '.join(LOCAL_FORMATS)} files")
    builders = {LOCAL_FORMATS.get(p.suffix) for p in files}
    if None in builders:
        raise DatasetError(f"{path}: unsupported file type; use one of {', '.join(LOCAL_FORMATS)}")
    if len(builders) > 1:
        raise DatasetError(f"{path} mixes file formats ({', '.join(sorted(str(b) for b in builders))})")
    return str(builders.pop()), {p.stem: str(p) for p in files}


@dataclass
class FileReport:
    """The check of one chat data file: counts per reason and the first problems with their line numbers."""

    path: Path
    training: bool
    rows: int = 0
    good_rows: int = 0
    bad_rows: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # "line 12: role_invalid (messages[1].role is 'bot')"
    stopped_early: bool = False  # stopped after max_errors problems; counts cover the lines read so far
    error: str | None = None  # the file as a whole is unusable (missing, unreadable, wrong format)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.bad_rows and self.good_rows > 0

    def summary(self) -> str:
        if self.error:
            return f"{self.path.name}: {self.error}"
        if self.ok:
            return f"{self.path.name}: {self.good_rows} conversations"
        if not self.bad_rows:
            return f"{self.path.name}: no conversations"
        counts = ", ".join(f"{n} x {r}" for r, n in sorted(self.bad_rows.items()))
        more = " (stopped early)" if self.stopped_early else ""
        first = f"; {self.problems[0]}" if self.problems else ""
        return f"{self.path.name}: {counts} in {self.rows} rows read{more}{first}"


def iter_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, row)`` of a JSON Lines file (or a JSON array); bad lines yield ``INVALID_ROW``."""
    with Path(path).open(encoding="utf-8") as handle:
        head = handle.read(4096).lstrip()
        handle.seek(0)
        if head.startswith("["):  # a .json file holding one array of rows
            try:
                rows = json.load(handle)
            except json.JSONDecodeError:
                yield 1, INVALID_ROW
                return
            yield from enumerate(rows, start=1)
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError:
                yield number, INVALID_ROW


class _InvalidRow:
    """Stands for a line that is not JSON, so readers can count it without a second parse."""


INVALID_ROW: Any = _InvalidRow()


def validate_chat_file(path: Path, *, training: bool, max_errors: int = 20) -> FileReport:
    """Check a JSON Lines chat file row by row; stops after ``max_errors`` bad rows to stay fast."""
    path = Path(path)
    report = FileReport(path=path, training=training)
    if path.suffix not in {".jsonl", ".json"}:
        report.error = f"expected a .jsonl file of chat conversations, got {path.suffix or 'no extension'!r}"
        return report
    if not path.is_file():
        report.error = "file not found"
        return report
    try:
        for number, row in iter_rows(path):
            report.rows += 1
            problem = (INVALID_JSON, "not valid JSON") if row is INVALID_ROW else row_problem(row, training=training)
            if problem is None:
                report.good_rows += 1
                continue
            report.bad_rows[problem[0]] = report.bad_rows.get(problem[0], 0) + 1
            report.problems.append(f"line {number}: {problem[0]} ({problem[1]})")
            if len(report.problems) >= max_errors:
                report.stopped_early = True
                break
    except (OSError, UnicodeDecodeError) as exc:
        report.error = f"cannot read the file ({type(exc).__name__})"
    return report
