"""What a local endpoint serves, apart from HTTP: request payloads, the generator that owns the model,
request stats and keys.

``Generator`` runs ``generate()`` on one worker thread: a request submits a conversation and gets a future,
so the event loop never blocks, and concurrent requests with equal parameters are batched into one call
when ``max_batch > 1``. ``Stats`` persists the counters the idle check reads (atomic writes).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from local.platform.workspace import read_json, write_json_atomic

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_CONVERSATIONS = 8
MAX_MESSAGES = 64
MAX_CONTENT_CHARS = 32_000
MAX_TOTAL_CHARS = 64_000
MAX_NEW_TOKENS = 1024
STATS_MINUTES_KEPT = 24 * 60


# ---------------------------------------------------------------------------------------------- payloads


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)


class GenerationParams(BaseModel):
    """The seed's ``parameters``; hashable so equal requests can share one batched ``generate()``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=0.6, ge=0, le=2)
    top_p: float = Field(default=0.9, gt=0, le=1)
    do_sample: bool = True
    max_new_tokens: int = Field(default=200, ge=1, le=MAX_NEW_TOKENS)


Conversation = list[Message]


def _check_total(conversations: Sequence[Sequence[Message]]) -> None:
    total = sum(len(m.content) for c in conversations for m in c)
    if total > MAX_TOTAL_CHARS:
        raise ValueError(f"the messages hold {total} characters; at most {MAX_TOTAL_CHARS} per request")


class ScoreInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_string: list[Conversation] = Field(min_length=1, max_length=MAX_CONVERSATIONS)
    parameters: GenerationParams = Field(default_factory=GenerationParams)

    @field_validator("input_string")
    @classmethod
    def _conversations(cls, value: list[Conversation]) -> list[Conversation]:
        for i, conversation in enumerate(value):
            if not 1 <= len(conversation) <= MAX_MESSAGES:
                raise ValueError(f"conversation {i} must have 1-{MAX_MESSAGES} messages")
        _check_total(value)
        return value


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_data: ScoreInput
    params: dict[str, Any] = Field(default_factory=dict)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send name, tool fields, ...

    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]

    def to_message(self) -> Message:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return Message(role="system" if self.role == "developer" else self.role, content=text)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields this server has no use for

    model: str | None = Field(default=None, max_length=256)
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS)
    n: int = Field(default=1, ge=1, le=1, description="only one choice is generated")
    stream: bool = False
    seed: int | None = None

    @field_validator("stream")
    @classmethod
    def _no_stream(cls, value: bool) -> bool:
        if value:
            raise ValueError("streaming is not supported by this endpoint; send stream=false")
        return value

    def conversation(self) -> list[Message]:
        messages = [m.to_message() for m in self.messages]
        _check_total([messages])
        return messages

    def params(self) -> GenerationParams:
        temperature = 1.0 if self.temperature is None else self.temperature
        return GenerationParams(
            temperature=temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            do_sample=temperature > 0,
            max_new_tokens=self.max_completion_tokens or self.max_tokens or 256,
        )


def validation_reason(exc: ValidationError, limit: int = 5) -> str:
    """Pydantic's errors as ``field.path: message`` lines, the input values left out."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


# -------------------------------------------------------------------------------------------- generation


class ChatModelLike(Protocol):
    def generate(
        self,
        conversations: list[list[dict[str, str]]],
        *,
        temperature: float,
        top_p: float,
        do_sample: bool,
        max_new_tokens: int,
        seed: int | None = None,
    ) -> list[str]: ...


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class _Job:
    conversation: list[dict[str, str]]
    params: GenerationParams
    seed: int | None
    future: Future[Completion]


class Generator:
    """Owns the model; one worker thread runs ``generate()`` so calls never overlap.

    ``submit`` returns a future at once. With ``max_batch > 1`` the worker gathers requests that share the
    same parameters (waiting at most ``batch_window_s`` for company) and generates them in one call.
    """

    def __init__(
        self,
        model: ChatModelLike,
        *,
        max_batch: int = 1,
        batch_window_s: float = 0.0,
        count_tokens: Callable[[list[dict[str, str]], str], tuple[int, int]] | None = None,
    ) -> None:
        self._model = model
        self._max_batch = max(1, max_batch)
        self._window = batch_window_s
        self._count_tokens = count_tokens
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="generator", daemon=True)
        self._thread.start()

    def submit(
        self, conversation: list[dict[str, str]], params: GenerationParams, seed: int | None = None
    ) -> Future[Completion]:
        future: Future[Completion] = Future()
        self._queue.put(_Job(conversation, params, seed, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job plus compatible queued ones; True when a stop request was met."""
        batch, held = [first], []
        stop = False
        deadline = time.monotonic() + self._window
        while len(batch) < self._max_batch:
            try:
                timeout = max(0.0, deadline - time.monotonic())
                item = self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            if item.params == first.params and item.seed is None and first.seed is None:
                batch.append(item)
            else:
                held.append(item)
        for item in held:  # incompatible requests keep their turn for the next round
            self._queue.put(item)
        return batch, stop

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first) if self._max_batch > 1 else ([first], False)
            live = [j for j in batch if j.future.set_running_or_notify_cancel()]
            if live:
                self._generate(live)
            if stop:
                return

    def _generate(self, batch: list[_Job]) -> None:
        params = batch[0].params
        try:
            texts = self._model.generate(
                [j.conversation for j in batch],
                temperature=params.temperature,
                top_p=params.top_p,
                do_sample=params.do_sample,
                max_new_tokens=params.max_new_tokens,
                seed=batch[0].seed,
            )
            if len(texts) != len(batch):
                raise RuntimeError(f"the model returned {len(texts)} answers for {len(batch)} conversations")
        except Exception as exc:
            log.exception("generation failed")
            for job in batch:
                job.future.set_exception(exc)
            return
        for job, text in zip(batch, texts, strict=True):
            prompt_tokens = completion_tokens = None
            if self._count_tokens is not None:
                with contextlib.suppress(Exception):
                    prompt_tokens, completion_tokens = self._count_tokens(job.conversation, text)
            job.future.set_result(Completion(text, prompt_tokens, completion_tokens))


def token_counter(model: Any) -> Callable[[list[dict[str, str]], str], tuple[int, int]] | None:
    """Counts prompt and completion tokens with the model's tokenizer, when the model can."""
    count_tokens = getattr(model, "count_tokens", None)
    if not callable(count_tokens):
        return None

    def count(conversation: list[dict[str, str]], text: str) -> tuple[int, int]:
        return int(count_tokens(conversation)), int(count_tokens(text))

    return count


# ------------------------------------------------------------------------------------------------- stats


class Stats:
    """Authenticated scoring requests: total, last time, and per-minute counts for the last day."""

    def __init__(self, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        data = read_json(path) or {}
        self.request_count = int(data.get("request_count", 0))
        self.last_request_at: str | None = data.get("last_request_at")
        self.minutes: dict[str, int] = {str(k): int(v) for k, v in (data.get("minutes") or {}).items()}

    def record(self) -> None:
        now = self._clock()
        with self._lock:
            self.request_count += 1
            self.last_request_at = now.isoformat()
            minute = now.strftime("%Y-%m-%dT%H:%M")
            self.minutes[minute] = self.minutes.get(minute, 0) + 1
            oldest = (now - timedelta(minutes=STATS_MINUTES_KEPT)).strftime("%Y-%m-%dT%H:%M")
            self.minutes = {k: v for k, v in self.minutes.items() if k >= oldest}
            write_json_atomic(self.path, self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        return {
            "request_count": self.request_count,
            "last_request_at": self.last_request_at,
            "minutes": dict(self.minutes),
        }


def activity_since(stats: dict[str, Any] | None, since: datetime) -> tuple[datetime | None, int]:
    """(last request time if at or after ``since``, requests counted in the minutes from ``since``)."""
    if not stats:
        return None, 0
    last_text = stats.get("last_request_at")
    last = datetime.fromisoformat(last_text) if isinstance(last_text, str) else None
    floor = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    count = sum(int(v) for k, v in (stats.get("minutes") or {}).items() if k >= floor)
    if last is None or last < since:
        return None, count
    return last, max(count, 1)


# -------------------------------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class Keys:
    primary: str
    secondary: str

    def __repr__(self) -> str:
        return "Keys(***)"

    @classmethod
    def load(cls, path: Path) -> Keys:
        data = read_json(path)
        if not data or not data.get("primary") or not data.get("secondary"):
            raise ValueError(f"{path.name} has no primary/secondary keys")
        return cls(str(data["primary"]), str(data["secondary"]))

    def accepts(self, candidate: str) -> bool:
        given = candidate.encode()
        # Both comparisons always run, so timing says nothing about which key (if any) matched.
        first = hmac.compare_digest(given, self.primary.encode())
        second = hmac.compare_digest(given, self.secondary.encode())
        return first or second
