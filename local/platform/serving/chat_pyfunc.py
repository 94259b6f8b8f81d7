"""The MLflow ``pyfunc`` wrapper of the chat model (the format itself: ``local/platform/mlflow_model.py``).

``predict`` answers the Azure ML scoring payload of the seed notebook:
``{"input_data": {"input_string": [[messages]], "parameters": {...}}}`` -> one reply string per conversation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.pyfunc import PythonModel
from pydantic import ValidationError

from local.platform.mlflow_model import HF_ARTIFACT
from local.platform.serving.chat_model import ChatModel, GenerationParamError, scoring_parameters
from shared.scoring import ScoreInput


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
