"""The MLflow ``pyfunc`` wrapper of the chat model and the function that saves a model in that format.

The saved model is self-contained: its artifact ``hf_model`` is the Hugging Face directory (weights,
tokenizer, chat template). ``predict`` answers the Azure ML scoring payload of the seed notebook:
``{"input_data": {"input_string": [[messages]], "parameters": {...}}}`` -> one reply string per conversation.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.pyfunc import PythonModel
from pydantic import ValidationError

from local.platform.serving.chat_model import (
    HF_ARTIFACT,
    ChatModel,
    GenerationParamError,
    scoring_parameters,
)
from shared.scoring import ScoreInput

logger = logging.getLogger(__name__)

ENTRY_POINT = Path(__file__).with_name("pyfunc_entry.py")
RUNTIME_PACKAGES = ("torch", "transformers", "peft", "safetensors", "tokenizers", "mlflow")


def parse_scoring_payload(payload: Any) -> tuple[list[list[dict[str, str]]], dict[str, Any]]:
    """``(conversations, generation parameters)`` from an Azure ML chat scoring payload (the contract in
    ``shared.scoring``), or GenerationParamError naming the field."""
    if hasattr(payload, "to_dict") and not isinstance(payload, dict):  # a one-row DataFrame from some clients
        payload = payload.to_dict(orient="list")
    if not isinstance(payload, dict):
        raise GenerationParamError("the payload must be a JSON object with `input_data`")
    data = payload.get("input_data", payload)
    if not isinstance(data, dict) or "input_string" not in data:
        raise GenerationParamError("`input_data.input_string` is required: a list of conversations")
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise GenerationParamError("`input_data.parameters` must be an object")
    try:
        # Parameters are checked by generation_options (params may add to them); the rest here.
        score = ScoreInput.model_validate({"input_string": data["input_string"]})
    except ValidationError as exc:
        raise GenerationParamError(_reasons("input_data", exc)) from None
    conversations = [[m.model_dump() for m in conversation] for conversation in score.input_string]
    return conversations, parameters


def _reasons(prefix: str, exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join([prefix, *(str(p) for p in e['loc'])])}: {e['msg']}" for e in exc.errors()[:5])


def generation_options(parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters checked against the scoring contract, its defaults for missing ones."""
    return scoring_parameters(parameters).model_dump()


class ChatPyfuncModel(PythonModel):
    """``mlflow.pyfunc`` face of ``ChatModel``: Azure ML chat payload in, list of replies out."""

    # The payload is one JSON object, not a list of rows: no type-hint based input validation (MLflow's
    # own switch; without it MLflow warns at class definition that predict has no hints).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.chat = ChatModel.from_hf_dir(Path(context.artifacts[HF_ARTIFACT]))

    # Unannotated on purpose: MLflow would derive a list-of-rows input schema from the hints at save time.
    def predict(self, context, model_input, params=None):
        conversations, parameters = parse_scoring_payload(model_input)
        return self.chat.generate(conversations, **generation_options({**parameters, **(params or {})}))


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
    target = Path(target)
    if target.exists():
        logger.info("replacing an earlier model at %s", target)
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
