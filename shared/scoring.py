"""The Azure ML chat scoring contract in one place: request models, limits, defaults, and reading answers.

The seed's payload is ``{"input_data": {"input_string": [conversation, ...], "parameters": {...}},
"params": {}}``; one conversation may also come as a flat list of messages (Azure's own samples do).
Every user reads it from here: the smoke-test config (so a smoke test that validates can be served), the
local endpoint server, the MLflow pyfunc, ``autopilot invoke`` and the demo.

Defaults: a request without ``parameters`` (or with some left out) gets the seed's values, sampling
(temperature 0.6, top_p 0.9, do_sample true, 200 new tokens), on every server; greedy decoding is asked for
with ``do_sample: false`` or ``temperature: 0``; a temperature below ``MIN_SAMPLING_TEMPERATURE`` is greedy too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_CONVERSATIONS = 8  # conversations in one /score request
MAX_MESSAGES = 64  # messages in one conversation
MAX_CONTENT_CHARS = 32_000  # characters in one message
MAX_TOTAL_CHARS = 64_000  # characters in all the messages of one request
MAX_NEW_TOKENS = 2048  # tokens one answer may generate
MAX_TEMPERATURE = 2.0
# Below this a temperature is greedy decoding in all but name, and dividing float32 logits by it overflows (a
# denormal such as 1e-300 is 0 in float32: 0/0 is NaN). vLLM draws the same line (its _SAMPLING_EPS, 1e-5).
MIN_SAMPLING_TEMPERATURE = 1e-5
# Seeds are 64-bit signed integers, as OpenAI's `seed`; anything wider is a 400, not an overflow.
MIN_SEED, MAX_SEED = -(2**63), 2**63 - 1

ChatRole = Literal["system", "user", "assistant"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ChatMessage(_Strict):
    role: ChatRole
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)


class ScoringParameters(_Strict):
    """Generation parameters of the scoring request (the seed's ``parameters``); the defaults are the seed's."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    temperature: float = Field(default=0.6, ge=0, le=MAX_TEMPERATURE)
    top_p: float = Field(default=0.9, gt=0, le=1)
    do_sample: bool = Field(default=True, strict=True)
    max_new_tokens: int = Field(default=200, ge=1, le=MAX_NEW_TOKENS)
    seed: int | None = Field(default=None, ge=MIN_SEED, le=MAX_SEED, description="Reproducible sampling.")

    @property
    def sampling(self) -> bool:
        """Whether tokens are sampled; greedy when do_sample is false or the temperature is (about) 0."""
        return self.do_sample and samples_at(self.temperature)


def samples_at(temperature: float) -> bool:
    """Whether ``temperature`` asks for sampling: greedy at 0 and below ``MIN_SAMPLING_TEMPERATURE``."""
    return temperature >= MIN_SAMPLING_TEMPERATURE


DEFAULT_PARAMETERS = ScoringParameters()

Conversation = list[ChatMessage]


def check_total_chars(conversations: Sequence[Sequence[ChatMessage]]) -> None:
    total = sum(len(m.content) for c in conversations for m in c)
    if total > MAX_TOTAL_CHARS:
        raise ValueError(f"the messages hold {total} characters; at most {MAX_TOTAL_CHARS} per request")


class ScoreInput(_Strict):
    input_string: list[Conversation] = Field(min_length=1, max_length=MAX_CONVERSATIONS)
    parameters: ScoringParameters = Field(default_factory=ScoringParameters)

    @field_validator("input_string", mode="before")
    @classmethod
    def _one_flat_conversation(cls, value: Any) -> Any:
        # Azure's chat-completion samples also send one conversation as a flat list of messages.
        if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
            return [value]
        return value

    @field_validator("input_string")
    @classmethod
    def _conversations(cls, value: list[Conversation]) -> list[Conversation]:
        for i, conversation in enumerate(value):
            if not 1 <= len(conversation) <= MAX_MESSAGES:
                raise ValueError(f"conversation {i} must have 1-{MAX_MESSAGES} messages")
        check_total_chars(value)
        return value


class ScoreRequest(_Strict):
    input_data: ScoreInput
    params: dict[str, Any] = Field(default_factory=dict)


# Keys a chat-completion endpoint answers with: the managed endpoint's {"output": ...}, the MLflow scorer's
# {"0": ...} (one key per conversation), and the generic text fields of other servers.
_ANSWER_KEYS = ("output", "0", "generated_text", "text", "answer")


def scoring_payload(
    conversations: Sequence[Sequence[Mapping[str, str]]], parameters: Mapping[str, Any] | ScoringParameters
) -> dict[str, Any]:
    """``{"input_data": {"input_string": [conversation, ...], "parameters": {...}}, "params": {}}``.

    Unset (None) parameters are left out: a managed endpoint's scorer may not know them.
    """
    if isinstance(parameters, ScoringParameters):
        parameters = parameters.model_dump()
    return {
        "input_data": {
            "input_string": [[dict(m) for m in conversation] for conversation in conversations],
            "parameters": {k: v for k, v in parameters.items() if v is not None},
        },
        "params": {},
    }


def answer_text(answer: Any) -> str:
    """The generated text of a scoring answer; several answers are joined by ``---`` lines."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, dict):
        for key in _ANSWER_KEYS:
            if isinstance(answer.get(key), str):
                return str(answer[key])
    if isinstance(answer, list) and answer:
        return "\n---\n".join(answer_text(a) for a in answer)
    return json.dumps(answer, indent=2, default=str)
