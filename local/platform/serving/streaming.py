"""A streamed chat completion: OpenAI's server-sent events (``data:`` chunks as text is decoded, then
``[DONE]``) for one request decoding in the batch engine."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from local.platform.serving import openai_api
from local.platform.serving.batching import Handle, Sampling

log = logging.getLogger(__name__)

PING_S = 15

Submit = Callable[[list[dict[str, str]], Sampling, Callable[[str], None]], Handle]


def stream_completion(
    submit: Submit,
    conversation: list[dict[str, str]],
    payload: openai_api.ChatCompletionRequest,
    model: str,
    *,
    request_timeout_ms: int,
    on_end: Callable[[], None],
) -> EventSourceResponse:
    """Submit the request and stream its text; ``on_end`` runs once when the stream ends, however it ends
    (also when the client leaves before it starts): the caller's slot is held until then."""
    loop = asyncio.get_running_loop()
    deltas: asyncio.Queue[str] = asyncio.Queue()

    def on_text(text: str) -> None:  # called on the engine's thread
        loop.call_soon_threadsafe(deltas.put_nowait, text)

    handle = submit(conversation, payload.sampling(), on_text)
    done_future = asyncio.wrap_future(handle.future)
    id_, created = openai_api.completion_id(), int(time.time())
    deadline = loop.time() + request_timeout_ms / 1000
    ended = False

    def end() -> None:
        nonlocal ended
        if not ended:
            ended = True
            handle.cancel()
            on_end()

    def piece(**fields: Any) -> str:
        return json.dumps(openai_api.chunk(id_=id_, model=model, created=created, **fields))

    async def events() -> AsyncIterator[str]:
        try:
            yield piece(delta={"role": "assistant", "content": ""})
            while True:
                getter = asyncio.ensure_future(deltas.get())
                waiting: set[asyncio.Future[Any]] = {getter, done_future}
                finished, _ = await asyncio.wait(
                    waiting, timeout=max(0.0, deadline - loop.time()), return_when="FIRST_COMPLETED"
                )
                if getter in finished:
                    yield piece(delta={"content": getter.result()})
                    continue
                getter.cancel()
                if not finished:
                    raise TimeoutError
                break
            while not deltas.empty():  # text handed out just before the end
                yield piece(delta={"content": deltas.get_nowait()})
            done = done_future.result()
            yield piece(finish_reason=done.finish_reason)
            if payload.include_usage:
                yield piece(usage_=openai_api.usage(done))
        except TimeoutError:
            message = f"no answer within request_timeout_ms={request_timeout_ms}"
            yield json.dumps(openai_api.error_body(message, type_="timeout", code="RequestTimeout"))
        except Exception:
            log.exception("streaming failed")
            yield json.dumps(openai_api.error_body("generation failed; see the endpoint log", type_="server_error"))
        finally:
            end()
        yield "[DONE]"

    # The background task ends it too, should the client leave before the stream starts.
    return EventSourceResponse(events(), sep="\n", ping=PING_S, background=BackgroundTask(end))
