"""Checkpoints on the tiny model: a run killed after a checkpoint and resumed ends with the weights of an
uninterrupted run; save_total_limit prunes; metric_for_best_model keeps the best validation checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from local.platform.models import DTYPE_SETTING
from local.platform.training import TrainingResult, TrainingSpec, run_training
from local.platform.training.checkpoints import latest_checkpoint, list_checkpoints, read_state
from tests.functional.local.training.helpers import make_spec

RUN = {"max_steps": 6, "save_steps": 2, "lora_dropout": 0.1, "logging_steps": 1}  # dropout: the RNG matters


class Killed(Exception):
    """Stands in for the job process dying mid-training."""


def adapter(spec: TrainingSpec) -> dict[str, torch.Tensor]:
    return load_file(spec.output_dir / "lora_adapter" / "adapter_model.safetensors")


def run(spec: TrainingSpec, kill_at_step: int | None = None) -> TrainingResult:
    def progress(event: dict[str, Any]) -> None:
        if kill_at_step is not None and event.get("step") == kill_at_step:
            raise Killed

    return run_training(spec, progress)


@pytest.fixture(autouse=True)
def float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DTYPE_SETTING, "float32")


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path]
) -> None:
    whole = make_spec(tmp_path / "whole", tiny_model_dir, small_data, **RUN)
    uninterrupted = run(whole)

    spec = make_spec(tmp_path / "killed", tiny_model_dir, small_data, **RUN)
    with pytest.raises(Killed):
        run(spec, kill_at_step=5)
    latest = latest_checkpoint(spec.output_dir)
    assert latest is not None and latest.name == "checkpoint-4"

    spec.resume = True
    resumed = run(spec)

    assert "resumed from the checkpoint of step 4" in resumed.notes
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in uninterrupted.history]
    expected, got = adapter(whole), adapter(spec)
    assert set(expected) == set(got) and expected
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert resumed.metrics["eval_loss_after"] == uninterrupted.metrics["eval_loss_after"]


def test_a_run_that_does_not_resume_starts_over_and_save_total_limit_prunes(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path]
) -> None:
    spec = make_spec(tmp_path, tiny_model_dir, small_data, **RUN, save_total_limit=2)
    with pytest.raises(Killed):
        run(spec, kill_at_step=3)
    assert [p.name for p in list_checkpoints(spec.output_dir)] == ["checkpoint-2"]
    result = run(spec)  # resume not asked: the earlier attempt's checkpoint is not used
    assert not any("resumed" in note for note in result.notes)
    assert [p.name for p in list_checkpoints(spec.output_dir)] == ["checkpoint-4", "checkpoint-6"]
    state = read_state(spec.output_dir / "checkpoints" / "checkpoint-6")
    assert state["step"] == 6 and state["loop"]["micro_batches"] == 6
    for name in ("trainable.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt"):
        assert (spec.output_dir / "checkpoints" / "checkpoint-6" / name).is_file()


def test_resume_with_no_checkpoint_trains_from_the_start(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path]
) -> None:
    spec = make_spec(tmp_path, tiny_model_dir, small_data, max_steps=2, resume_from_checkpoint=True)
    result = run(spec)
    assert "resume requested but no checkpoint saved yet: trained from the start" in result.notes
    assert result.metrics["steps"] == 2


def test_metric_for_best_model_keeps_the_checkpoint_of_the_lowest_validation_loss(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path]
) -> None:
    spec = make_spec(
        tmp_path,
        tiny_model_dir,
        small_data,
        max_steps=4,
        evaluation_strategy="steps",
        eval_steps=1,
        metric_for_best_model="loss",
        save_steps=100,
        learning_rate=5e-2,
    )
    spec.validation_file = small_data["test_sft"]
    run(spec)
    saved = list_checkpoints(spec.output_dir)
    assert [p.name for p in saved] == [f"checkpoint-{s}" for s in range(1, 5)]  # one per evaluation
    validation = read_state(saved[-1])["loop"]["validation"]
    assert [v["step"] for v in validation] == [1.0, 2.0, 3.0, 4.0]
    best = min(validation, key=lambda v: v["validation_loss"])
    kept = load_file(spec.output_dir / "checkpoints" / f"checkpoint-{int(best['step'])}" / "trainable.safetensors")
    trained = adapter(spec)
    assert len(kept) == len(trained)
    for name, tensor in kept.items():
        assert torch.equal(trained[name.replace(".default", "")], tensor), name


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_cuda_job_on_a_machine_without_cuda_fails_with_a_reason_before_loading(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path]
) -> None:
    from local.platform.models import pick_dtype
    from local.platform.training import TrainingError

    spec = make_spec(tmp_path, tiny_model_dir, small_data)
    spec.device = "cuda"
    with pytest.raises(TrainingError, match="no CUDA GPU"):
        run(spec)
    assert not spec.output_dir.exists()
    assert pick_dtype("cuda", env={}) == torch.float32  # auto: bf16 only where a GPU supports it
