"""The MLflow model format of a fine-tuned chat model: what training saves and what serving loads.

A saved model is an MLflow ``pyfunc`` model built "from code" (``serving/pyfunc_entry.py``, which MLflow
copies into the model), self-contained: its artifact ``hf_model`` is the Hugging Face directory (weights,
tokenizer, chat template), with an unmerged LoRA adapter in ``hf_model/adapter`` when the recipe did not
merge it. Training (``training/recipe.py``) writes it with ``save_chat_model``; the endpoint server finds
the Hugging Face directory with ``hf_dir_of`` without importing mlflow (it starts faster), and
``mlflow.pyfunc.load_model`` opens the same directory through ``serving/chat_pyfunc.py``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HF_ARTIFACT = "hf_model"  # the artifact key (and folder name) of the Hugging Face directory in the MLflow model
ADAPTER_DIR = "adapter"  # an unmerged LoRA adapter saved beside the base weights
ENTRY_POINT = Path(__file__).parent / "serving" / "pyfunc_entry.py"
RUNTIME_PACKAGES = ("torch", "transformers", "peft", "safetensors", "tokenizers", "mlflow")


def hf_dir_of(mlflow_model_dir: Path) -> Path:
    """The Hugging Face directory inside an MLflow model saved by ``save_chat_model``."""
    import yaml

    mlflow_model_dir = Path(mlflow_model_dir)
    mlmodel = mlflow_model_dir / "MLmodel"
    if not mlmodel.is_file():
        raise FileNotFoundError(f"{mlflow_model_dir} is not an MLflow model (no MLmodel file)")
    meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    artifacts = meta.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    relative = artifacts.get(HF_ARTIFACT, {}).get("path", f"artifacts/{HF_ARTIFACT}")
    hf_dir = mlflow_model_dir / relative
    if not (hf_dir / "config.json").is_file():
        raise FileNotFoundError(f"{mlflow_model_dir} holds no Hugging Face model at {relative}")
    return hf_dir


def _requirements() -> list[str]:
    pins = []
    for package in RUNTIME_PACKAGES:
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(package)
    return pins


def save_chat_model(hf_dir: Path, target: Path, *, metadata: dict[str, Any] | None = None) -> Path:
    """Save ``hf_dir`` as an MLflow pyfunc chat model at ``target`` (replaced if a retry left one)."""
    import mlflow.pyfunc

    target = Path(target)
    if target.exists():
        log.info("replacing an earlier model at %s", target)
        shutil.rmtree(target)
    mlflow.pyfunc.save_model(
        path=str(target),
        python_model=str(ENTRY_POINT),
        artifacts={HF_ARTIFACT: str(hf_dir)},
        # Explicit pins: inferring requirements would load the model in a subprocess, for minutes.
        pip_requirements=_requirements(),
        metadata={"task": "chat-completion", **(metadata or {})},
    )
    return target
