"""Fixtures for the local training tests: the tiny random model (built once per session) and small data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.platform.models import TINY, materialize
from tests.functional.local.training.helpers import SAMPLE


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The session's base temp directory: every test folder that needs a local model shares one build.
    return tmp_path_factory.getbasetemp() / "local-model-cache"


@pytest.fixture(scope="session")
def tiny_model_dir(model_cache: Path) -> Path:
    return materialize(TINY, model_cache)


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A slice of the committed sample: 24 training and 6 test conversations, for seconds-long runs."""
    folder = tmp_path_factory.mktemp("small-data")
    files = {}
    for split, rows in (("train_sft", 24), ("test_sft", 6), ("test_gen", 2)):
        lines = (SAMPLE / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:rows]
        files[split] = folder / f"{split}.jsonl"
        files[split].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files
