"""Which checkpoint counts: complete ones only (a save that died midway leaves a temporary folder)."""

from __future__ import annotations

from pathlib import Path

from local.platform.training.checkpoints import STATE_FILE, latest_checkpoint, list_checkpoints, prune
from local.platform.training.spec import short_history


def make(root: Path, name: str, complete: bool = True) -> Path:
    path = root / "checkpoints" / name
    path.mkdir(parents=True)
    if complete:
        (path / STATE_FILE).write_text("{}")
    return path


def test_latest_is_the_highest_complete_step_by_number_not_by_name(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    make(tmp_path, "checkpoint-9")
    make(tmp_path, "checkpoint-10")
    make(tmp_path, "checkpoint-12", complete=False)  # died before its state was written
    make(tmp_path, ".tmp-checkpoint-14-123")
    make(tmp_path, "notes")
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "checkpoint-10"


def test_prune_keeps_the_newest_and_the_best_and_sweeps_leftovers(tmp_path: Path) -> None:
    for step in (2, 4, 6, 8):
        make(tmp_path, f"checkpoint-{step}")
    leftover = make(tmp_path, ".tmp-checkpoint-10-999999999")
    prune(tmp_path, 2, keep=tmp_path / "checkpoints" / "checkpoint-2")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-6", "checkpoint-8"]
    assert not leftover.exists()
    prune(tmp_path, -1)
    assert len(list_checkpoints(tmp_path)) == 3


def test_short_history_downsamples_evenly_and_merges_validation_by_step() -> None:
    history = [{"step": float(s), "loss": 3.0 - s / 100, "mean_token_accuracy": s / 100} for s in range(1, 101)]
    validation = [{"step": 50.0, "validation_loss": 2.5}, {"step": 75.0, "validation_loss": 2.4}]
    curve = short_history(history, validation, limit=10)
    train_points = [p for p in curve if "loss" in p]
    assert len(train_points) == 10
    assert train_points[0]["step"] == 1.0 and train_points[-1]["step"] == 100.0
    assert [p["step"] for p in curve] == sorted(p["step"] for p in curve)
    assert {p["step"]: p["validation_loss"] for p in curve if "validation_loss" in p} == {50.0: 2.5, 75.0: 2.4}
