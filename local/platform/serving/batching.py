"""Continuous batching: one worker thread decodes every live request together, one token per step.

Why: a small model decoding on a CPU is bound by memory traffic (every step reads all the weights), so one
forward pass for 8 rows costs little more than for 1. Each step:

1. requests that arrived are admitted (up to ``max_batch`` rows): their prompts are pre-filled together,
   left-padded, and their key/value cache joins the running one (``batch_cache.BatchCache``: the shorter
   side padded on the left, masked out);
2. one forward pass over the last token of every row; each row samples with its own parameters and its
   own ``torch.Generator`` (seeded when the request gave a seed). What one row's parameters or sampling
   breaks fails that row alone; a failed pre-fill fails only the requests it was admitting;
3. a row that met an end token, one of its stop strings, its token budget or the model's context leaves
   the batch at once (its cache rows are dropped, and columns only padding are trimmed).

Text is handed out as it is decoded (``on_text``), holding back a tail that could still become a stop
string or that ends inside a multi-byte character, so a stream never shows text the answer will not have
(``_Answers``: when a row is done, and what of its text may be shown). Usage counts the generated token ids.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from local.platform.serving.batch_cache import BatchCache
from shared.scoring import samples_at

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]


class PromptTooLongError(ValueError):
    """The prompt leaves no room in the model's context for the tokens asked for."""


@dataclass(frozen=True)
class Sampling:
    """One request's decoding: greedy when ``sample`` is false."""

    max_new_tokens: int
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    token_ids: tuple[int, ...] = ()


@dataclass
class _Row:
    """A request while it is queued or decoding."""

    conversation: list[dict[str, str]]
    sampling: Sampling
    on_text: Callable[[str], None] | None
    future: Future[Completion]
    generator: torch.Generator | None = None
    prompt_ids: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    emitted: str = ""
    cancelled: bool = False


class Handle:
    """What ``submit`` returns: the completion's future and a way to give up on it (the row leaves)."""

    def __init__(self, row: _Row) -> None:
        self._row = row
        self.future = row.future

    def cancel(self) -> None:
        self._row.cancelled = True


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters could still be the start of a stop string (or of a character)."""
    hold = 1 if text.endswith("\ufffd") else 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    return hold


class BatchEngine:
    """Owns a causal LM and its tokenizer (a ``ChatModel``); ``submit`` is safe from any thread."""

    def __init__(self, chat: Any, *, max_batch: int = 8) -> None:
        self.chat = chat
        self.model = chat.model
        self.tokenizer = chat.tokenizer
        self.device = chat.device
        self.max_batch = max(1, int(max_batch))
        self.stop_ids = set(chat.stop_token_ids)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 0) or 2048)
        self._answers = _Answers(self.tokenizer, self.stop_ids, self.context)
        self._queue: queue.Queue[_Row | None] = queue.Queue()
        self._batch: BatchCache[_Row] = BatchCache(self.device)  # touched by the worker thread only
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="batch-engine", daemon=True)
        self._thread.start()

    # -- the interface

    def submit(
        self,
        conversation: list[dict[str, str]],
        sampling: Sampling,
        on_text: Callable[[str], None] | None = None,
    ) -> Handle:
        row = _Row(conversation, sampling, on_text, Future())
        self._queue.put(row)
        return Handle(row)

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)

    # -- the worker

    def _run(self) -> None:
        while True:
            try:
                if not self._admit():
                    return
                if self._batch.rows:
                    self._step()
            except Exception as exc:  # a broken step fails the rows in it, never the engine
                log.exception("decoding failed")
                _fail(self._batch.rows, exc)
                self._batch.clear()

    def _admit(self) -> bool:
        """Take queued requests into the batch (blocking while there is nothing to do); False on close."""
        new: list[_Row] = []
        while len(self._batch.rows) + len(new) < self.max_batch:
            try:
                item = self._queue.get(block=not self._batch.rows and not new)
            except queue.Empty:
                break
            if item is None:
                self._fail_all(RuntimeError("the endpoint is shutting down"))
                return False
            if item.cancelled or not item.future.set_running_or_notify_cancel():
                continue
            try:
                self._prepare(item)
            except Exception as exc:
                item.future.set_exception(exc)
                continue
            new.append(item)
        if new:
            try:
                self._prefill(new)
            except Exception as exc:  # the batch already decoding is untouched: joining it comes last
                log.exception("pre-fill failed")
                _fail(new, exc)
        return True

    def _prepare(self, row: _Row) -> None:
        text = self.chat.prompt_text(row.conversation)
        row.prompt_ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        room = self.context - len(row.prompt_ids)
        if room < 1:
            raise PromptTooLongError(
                f"the prompt is {len(row.prompt_ids)} tokens; the model's context is {self.context} tokens"
            )
        seed = row.sampling.seed if row.sampling.seed is not None else secrets.randbits(63)
        row.generator = torch.Generator(device="cpu").manual_seed(seed % 2**64)

    def _prefill(self, new: list[_Row]) -> None:
        from transformers import DynamicCache

        width = max(len(r.prompt_ids) for r in new)
        pad = int(self.tokenizer.pad_token_id)
        ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in new], device=self.device)
        mask = torch.tensor(
            [[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in new], device=self.device
        )
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        with torch.inference_mode():
            # Only the last position's logits are needed: the vocabulary projection of every prompt token
            # would cost more than the rest of the pre-fill for a small model.
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        tokens = _next_tokens(out.logits[:, -1, :], new)
        self._batch.join(new, out.past_key_values, mask)
        self._advance(new, tokens)

    def _step(self) -> None:
        batch = self._batch
        positions = batch.grow()
        with torch.inference_mode():
            out = self.model(
                input_ids=batch.last,
                attention_mask=batch.mask,
                position_ids=positions,
                cache=batch.cache,
                use_cache=True,
            )
        batch.cache = out.past_key_values
        self._advance(list(batch.rows), _next_tokens(out.logits[:, -1, :], batch.rows))

    def _advance(self, rows: Sequence[_Row], tokens: Sequence[int | None]) -> None:
        """Append each row's token, hand out its new text, and drop the rows that are done (None: failed)."""
        batch = self._batch
        index = {id(r): i for i, r in enumerate(batch.rows)}
        assert batch.last is not None
        done: set[int] = set()
        for row, token in zip(rows, tokens, strict=True):
            i = index[id(row)]
            if token is None:  # its sampling failed; the error is on its future already
                done.add(i)
                continue
            try:
                going_on = self._answers.take(row, token)
            except Exception as exc:  # its stream's callback or its text: this row's, nobody else's
                log.warning("a request failed while decoding: %s", exc)
                row.future.set_exception(exc)
                going_on = False
            if going_on:
                batch.last[i, 0] = token
            else:
                done.add(i)
        if done:
            batch.keep([i for i in range(len(batch.rows)) if i not in done])

    def _fail_all(self, exc: Exception) -> None:
        _fail(self._batch.rows, exc)
        self._batch.clear()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and item.future.set_running_or_notify_cancel():
                item.future.set_exception(exc)


class _Answers:
    """How a row's token ids become its answer: when it is done (an end token, a stop string, its budget or
    the model's context), what of its text may be streamed yet, and the ``Completion`` it gets."""

    def __init__(self, tokenizer: Any, stop_ids: set[int], context: int) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self.context = context

    def take(self, row: _Row, token: int) -> bool:
        """Add ``token`` to the row; True while it goes on, False once it has its answer or was given up."""
        finish = self._append(row, token)
        if finish is not None:
            self._finish(row, finish)
        elif row.cancelled:  # given up by its caller (timeout, client gone): it leaves without an answer
            row.future.set_exception(RuntimeError("the request was cancelled"))
        return finish is None and not row.cancelled

    def _append(self, row: _Row, token: int) -> FinishReason | None:
        row.ids.append(token)
        if token in self.stop_ids:
            return "stop"
        # Without stop strings or a stream the text is decoded once, at the end.
        if (row.sampling.stop or row.on_text is not None) and self._hand_out(row):
            return "stop"
        if len(row.ids) >= row.sampling.max_new_tokens or len(row.prompt_ids) + len(row.ids) >= self.context:
            return "length"
        return None

    def _hand_out(self, row: _Row) -> bool:
        """Stream the text that is safe to show; True when a stop string has appeared."""
        text = self._text(row)
        for stop in row.sampling.stop:
            if stop in text:
                return True
        if row.on_text is not None:
            safe = text[: len(text) - _held_back(text, row.sampling.stop)]
            if safe.startswith(row.emitted) and len(safe) > len(row.emitted):
                row.on_text(safe[len(row.emitted) :])
                row.emitted = safe
        return False

    def _text(self, row: _Row) -> str:
        ids = [t for t in row.ids if t not in self.stop_ids]
        return str(self.tokenizer.decode(ids, skip_special_tokens=True)).lstrip()

    def _finish(self, row: _Row, reason: FinishReason) -> None:
        text = self._text(row)
        cuts = [text.find(stop) for stop in row.sampling.stop if stop in text]
        if cuts:
            text = text[: min(cuts)]  # a stop string ends the answer and is not part of it
        if row.on_text is not None and text.startswith(row.emitted) and len(text) > len(row.emitted):
            row.on_text(text[len(row.emitted) :])
            row.emitted = text
        row.future.set_result(Completion(text, len(row.prompt_ids), len(row.ids), reason, tuple(row.ids)))


def _fail(rows: Sequence[_Row], exc: Exception) -> None:
    """Fail each row that has no outcome yet (one whose own error or answer is already set keeps it)."""
    for row in rows:
        if not row.future.done():
            row.future.set_exception(exc)


def _next_tokens(logits: torch.Tensor, rows: Sequence[_Row]) -> list[int | None]:
    """Each row's next token; None for a row whose sampling failed (its future holds the error)."""
    logits = logits.float()
    chosen: list[int | None] = [int(t) for t in logits.argmax(-1).tolist()]
    for i, row in enumerate(rows):
        if not (row.sampling.sample and samples_at(row.sampling.temperature)):
            continue
        try:
            chosen[i] = _sampled_token(logits[i], row.sampling, row.generator)
        except Exception as exc:  # this row's numbers, nobody else's answer
            log.warning("sampling failed for one request: %s", exc)
            row.future.set_exception(exc)
            chosen[i] = None
    return chosen


def _sampled_token(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    """One token drawn from ``softmax(logits / temperature)``, cut to the nucleus ``top_p``.

    The largest logit is subtracted first, so the scaled logits are at most 0 and cannot overflow; the most
    likely token always stays in the nucleus, however small ``top_p`` is (a denormal ``top_p`` rounds to 0 in
    float32 and would otherwise drop every token)."""
    probs = torch.softmax((logits - logits.max()) / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        drop = sorted_probs.cumsum(-1) - sorted_probs >= sampling.top_p
        drop[0] = False
        sorted_probs[drop] = 0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator).item())
