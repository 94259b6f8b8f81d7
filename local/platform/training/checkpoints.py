"""Training checkpoints: ``<output_dir>/checkpoints/checkpoint-<step>/``, written atomically.

A checkpoint holds what a resumed run needs to end with the same weights as an uninterrupted one: the
trainable weights (the LoRA adapters, or every weight of a full fine-tune), the optimizer and scheduler
state, the random number generators (LoRA dropout draws from them) and the loop's own state (step, data
position, history, best validation loss), in ``state.json``.

Each checkpoint is written into a temporary folder beside the others and renamed into place, so a process
killed mid-save leaves a temporary folder that is ignored and swept, never a half checkpoint. This module
imports nothing heavy at import time, so the job runner can call ``latest_checkpoint`` cheaply.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

CHECKPOINTS_DIR = "checkpoints"
PREFIX = "checkpoint-"
STATE_FILE = "state.json"  # written last inside the temporary folder: a checkpoint with it is complete
WEIGHTS_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_FILE = "rng.pt"
TEMP_PREFIX = ".tmp-"


def checkpoints_dir(output_dir: Path) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIR


def _step_of(path: Path) -> int | None:
    name = path.name
    if not name.startswith(PREFIX) or not name[len(PREFIX) :].isdigit():
        return None
    return int(name[len(PREFIX) :])


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest step first."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = [(step, p) for p in root.iterdir() if (step := _step_of(p)) is not None and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step under ``output_dir``, or None."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def read_state(checkpoint: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    return state


def save_checkpoint(
    output_dir: Path, step: int, *, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]
) -> Path:
    """Write checkpoint ``step`` (replacing one of that step, e.g. from an attempt that died after it)."""
    import torch
    from safetensors.torch import save_file

    root = checkpoints_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step}"
    temp = root / f"{TEMP_PREFIX}{PREFIX}{step}-{os.getpid()}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    trainable = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
    save_file(trainable, str(temp / WEIGHTS_FILE))
    torch.save(optimizer.state_dict(), temp / OPTIMIZER_FILE)
    torch.save(scheduler.state_dict(), temp / SCHEDULER_FILE)
    torch.save(_rng_state(), temp / RNG_FILE)
    (temp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2, sort_keys=True), encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    os.replace(temp, final)
    return final


def load_checkpoint(checkpoint: Path, *, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG from ``checkpoint``; return its loop state."""
    load_weights(checkpoint, model)
    import torch

    optimizer.load_state_dict(torch.load(checkpoint / OPTIMIZER_FILE, weights_only=True))
    scheduler.load_state_dict(torch.load(checkpoint / SCHEDULER_FILE, weights_only=True))
    _set_rng_state(torch.load(checkpoint / RNG_FILE, weights_only=False))
    return read_state(checkpoint)


def load_weights(checkpoint: Path, model: Any) -> None:
    """Copy the checkpoint's trainable weights into ``model`` (same names, same shapes)."""
    import torch
    from safetensors.torch import load_file

    saved = load_file(str(checkpoint / WEIGHTS_FILE))
    parameters = dict(model.named_parameters())
    missing = sorted(set(saved) - set(parameters))
    if missing:
        raise ValueError(f"checkpoint {checkpoint.name} does not fit this model: {missing[0]} and others")
    with torch.no_grad():
        for name, tensor in saved.items():
            parameters[name].copy_(tensor)


def prune(output_dir: Path, limit: int, keep: Path | None = None) -> None:
    """Keep the newest ``limit`` checkpoints (``-1``: all), plus ``keep`` (the best one); sweep leftovers of
    saves that died midway."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return
    for leftover in root.glob(f"{TEMP_PREFIX}*"):
        if not leftover.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(leftover, ignore_errors=True)
    if limit < 0:
        return
    found = list_checkpoints(output_dir)
    newest = set(found[-limit:]) if limit > 0 else set()
    for path in found:
        if path not in newest and path != keep:
            shutil.rmtree(path, ignore_errors=True)


def clear(output_dir: Path) -> None:
    """Forget every checkpoint: a run that does not resume must not mix with an earlier attempt's."""
    shutil.rmtree(checkpoints_dir(output_dir), ignore_errors=True)


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
