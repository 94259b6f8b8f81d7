"""Helpers shared by the local training tests."""

from __future__ import annotations

import json
from pathlib import Path

from local.platform.models import TINY
from local.platform.training import TrainingSpec
from shared.config.params import APP_DEFAULTS

ROOT = Path(__file__).resolve().parents[4]
SAMPLE = ROOT / "samples" / "ultrachat_sample"


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def make_spec(tmp_path: Path, model_dir: Path, data: dict[str, Path], **params: object) -> TrainingSpec:
    """A short LoRA run on the tiny model; ``params`` override the component defaults."""
    base = {
        **APP_DEFAULTS,
        "apply_lora": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "learning_rate": 1e-2,  # large, so a few steps move every weight visibly
        "max_steps": 3,
        "logging_steps": 1,
        "max_seq_length": 256,
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 4,
    }
    return TrainingSpec(
        job_name="job-test",
        model_name=TINY,
        model_dir=model_dir,
        output_dir=tmp_path / "job",
        params={**base, **params},
        train_file=data["train_sft"],
        test_file=data["test_sft"],
        experiment_name="local-training-tests",
        tags={"autopilot_run_id": "job-test", "autopilot_managed": "true"},
    )
