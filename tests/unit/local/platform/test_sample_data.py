"""The committed ultrachat-format sample: deterministic, the documented shape, one learnable style."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[4]
SAMPLE = ROOT / "samples" / "ultrachat_sample"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample_data", ROOT / "samples" / "make_sample_data.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(split: str) -> list[dict]:
    return [json.loads(line) for line in (SAMPLE / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def test_committed_files_are_what_the_script_writes(tmp_path: Path) -> None:
    generator = load_generator()
    assert generator.main(["--out", str(tmp_path)]) == 0
    for split in generator.SPLITS:
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (SAMPLE / f"{split}.jsonl").read_bytes(), split


def test_sample_is_small() -> None:
    assert sum(p.stat().st_size for p in SAMPLE.glob("*.jsonl")) < 1_000_000


@pytest.mark.parametrize(("split", "rows"), [("train_sft", 320), ("test_sft", 40), ("train_gen", 40), ("test_gen", 40)])
def test_rows_have_the_ultrachat_shape_and_style(split: str, rows: int) -> None:
    data = read(split)
    assert len(data) == rows
    for row in data:
        assert list(row) == ["prompt", "prompt_id", "messages"]
        assert row["prompt"] == row["messages"][0]["content"]
        assert row["prompt_id"] == hashlib.sha256(row["prompt"].encode()).hexdigest()
        roles = [m["role"] for m in row["messages"]]
        assert 2 <= len(roles) <= 6 and roles == ["user", "assistant"] * (len(roles) // 2)
        for message in row["messages"][1::2]:
            assert message["content"].startswith("Autopilot here! Short answer: ")
            assert message["content"].endswith("\nAutopilot out.")


def test_no_first_question_appears_twice_across_splits() -> None:
    prompts = [row["prompt"] for split in ("train_sft", "test_sft", "train_gen", "test_gen") for row in read(split)]
    assert len(prompts) == len(set(prompts))
