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

from local.platform.serving.chat_model import (
    DEFAULT_MAX_NEW_TOKENS,
    HF_ARTIFACT,
    ChatModel,
    GenerationParamError,
)

logger = logging.getLogger(__name__)

ENTRY_POINT = Path(__file__).with_name("pyfunc_entry.py")
RUNTIME_PACKAGES = ("torch", "transformers", "peft", "safetensors", "tokenizers", "mlflow")


def parse_scoring_payload(payload: Any) -> tuple[list[list[dict[str, str]]], dict[str, Any]]:
    """``(conversations, generation parameters)`` from an Azure ML chat scoring payload, or ValueError."""
    if hasattr(payload, "to_dict") and not isinstance(payload, dict):  # a one-row DataFrame from some clients
        payload = payload.to_dict(orient="list")
    if not isinstance(payload, dict):
        raise GenerationParamError("the payload must be a JSON object with `input_data`")
    data = payload.get("input_data", payload)
    if not isinstance(data, dict) or "input_string" not in data:
        raise GenerationParamError("`input_data.input_string` is required: a list of conversations")
    conversations = data["input_string"]
    if not isinstance(conversations, list) or not conversations:
        raise GenerationParamError("`input_data.input_string` must be a non-empty list of conversations")
    for i, conversation in enumerate(conversations):
        if not isinstance(conversation, list) or not conversation:
            raise GenerationParamError(f"`input_data.input_string[{i}]` must be a non-empty list of messages")
        for j, message in enumerate(conversation):
            if (
                not isinstance(message, dict)
                or message.get("role") not in {"user", "assistant", "system"}
                or not isinstance(message.get("content"), str)
            ):
                raise GenerationParamError(
                    f"`input_data.input_string[{i}][{j}]` must be {{'role': user|assistant|system, 'content': text}}"
                )
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise GenerationParamError("`input_data.parameters` must be an object")
    return conversations, parameters


def generation_options(parameters: dict[str, Any]) -> dict[str, Any]:
    """The seed's parameters with the managed endpoint's defaults for missing ones."""
    known = {"temperature", "top_p", "do_sample", "max_new_tokens", "seed"}
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise GenerationParamError(f"unknown parameters {unknown}; accepted: {sorted(known)}")
    do_sample = parameters.get("do_sample", False)
    if not isinstance(do_sample, bool):
        raise GenerationParamError(f"do_sample must be true or false, got {do_sample!r}")
    return {
        "temperature": parameters.get("temperature", 1.0 if do_sample else 0.0),
        "top_p": parameters.get("top_p", 1.0),
        "do_sample": do_sample,
        "max_new_tokens": parameters.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
        "seed": parameters.get("seed"),
    }


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
