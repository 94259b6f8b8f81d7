"""The OpenAI chat-completions surface of a local endpoint: the request it accepts and the shapes it answers.

Supported: ``messages`` (system, developer, user, assistant; text content or text parts), ``temperature``,
``top_p``, ``max_tokens`` / ``max_completion_tokens``, ``stop`` (a string or up to 4), ``seed``, ``n`` (1),
``stream`` with ``stream_options.include_usage``, ``response_format`` of type ``text``, ``user``, and the
penalties, logprobs and top_logprobs at their neutral values. Anything else (``tools``, ``logit_bias``, ...)
is a 400 naming the field: silently ignoring it would answer a different question than the one asked.
Defaults are OpenAI's (temperature 1, top_p 1); the token budget defaults to the scoring contract's.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from local.platform.serving.batching import Completion, Sampling
from shared.scoring import (
    DEFAULT_PARAMETERS,
    MAX_CONTENT_CHARS,
    MAX_MESSAGES,
    MAX_NEW_TOKENS,
    MAX_SEED,
    MAX_TEMPERATURE,
    MIN_SEED,
    ChatMessage,
    check_total_chars,
    samples_at,
)

MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 64


class _Forbid(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TextPart(_Forbid):
    type: Literal["text"]
    text: str


class OpenAIMessage(_Forbid):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]
    name: str | None = Field(default=None, max_length=256)

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def to_message(self) -> ChatMessage:
        return ChatMessage(role="system" if self.role == "developer" else self.role, content=self.text())


class StreamOptions(_Forbid):
    include_usage: bool = False


class ResponseFormat(_Forbid):
    type: Literal["text"] = Field(description="only plain text answers; json_object/json_schema are refused")


class ChatCompletionRequest(_Forbid):
    model: str | None = Field(default=None, max_length=256)
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    temperature: float | None = Field(default=None, ge=0, le=MAX_TEMPERATURE)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS)
    n: int | None = Field(default=None, ge=1, le=1, description="only one choice is generated")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=MIN_SEED, le=MAX_SEED)
    logprobs: Literal[False] | None = Field(default=None, description="log probabilities are not returned")
    top_logprobs: None = Field(default=None, description="log probabilities are not returned")
    response_format: ResponseFormat | None = None
    frequency_penalty: Literal[0] | None = Field(default=None, description="penalties are not supported")
    presence_penalty: Literal[0] | None = Field(default=None, description="penalties are not supported")
    user: str | None = Field(default=None, max_length=256)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(not 1 <= len(s) <= MAX_STOP_CHARS for s in stops):
            raise ValueError(f"each stop sequence must have 1-{MAX_STOP_CHARS} characters")
        return value

    @model_validator(mode="after")
    def _fits(self) -> ChatCompletionRequest:
        for i, message in enumerate(self.messages):
            if not 1 <= len(message.text()) <= MAX_CONTENT_CHARS:
                raise ValueError(f"messages.{i}.content must hold 1-{MAX_CONTENT_CHARS} characters")
        check_total_chars([self.conversation()])
        return self

    def conversation(self) -> list[ChatMessage]:
        return [m.to_message() for m in self.messages]

    def sampling(self) -> Sampling:
        temperature = 1.0 if self.temperature is None else self.temperature
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return Sampling(
            max_new_tokens=self.max_completion_tokens or self.max_tokens or DEFAULT_PARAMETERS.max_new_tokens,
            sample=samples_at(temperature),
            temperature=temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            seed=self.seed,
            stop=tuple(stops),
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def error_body(message: str, *, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def validation_error(exc: ValidationError, limit: int = 5) -> tuple[str, str | None]:
    """(message naming the fields, the first field) from pydantic's errors; unknown fields are 'not supported'."""
    parts: list[str] = []
    first: str | None = None
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or None
        first = first or loc
        if err["type"] == "extra_forbidden":
            parts.append(f"{loc}: this field is not supported by this endpoint")
        else:
            field = _field_info(err["loc"])
            hint = f" ({field})" if field else ""
            parts.append(f"{loc or 'body'}: {err['msg']}{hint}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else ""), first


def _field_info(loc: tuple[Any, ...]) -> str | None:
    if len(loc) == 1 and isinstance(loc[0], str):
        field = ChatCompletionRequest.model_fields.get(loc[0])
        return field.description if field else None
    return None


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(done: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }


def completion_body(done: Completion, *, model: str, id_: str) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": done.text},
                "logprobs": None,
                "finish_reason": done.finish_reason,
            }
        ],
        "usage": usage(done),
    }


def chunk(
    *,
    id_: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage_: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; the usage chunk has no choices (as OpenAI's include_usage)."""
    body: dict[str, Any] = {"id": id_, "object": "chat.completion.chunk", "created": created, "model": model}
    if usage_ is not None:
        body["choices"] = []
        body["usage"] = usage_
    else:
        body["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}]
    return body


def model_object(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "autopilot"}
