"""The local endpoint: one HTTP server process serving one registered model version on loopback.

Run as ``python -m local.platform.serving.server --state-dir DIR``; DIR holds ``state.json`` (port, model
source, request settings) and ``keys.json`` (mode 0600). Keys are read from that file only: never from argv
or the environment, and never logged.

Routes:
- ``GET /health`` (no key): 200 ``{"status": "healthy"}`` once the model is loaded, 503 while loading.
- ``POST /score``: the Azure ML chat payload of the seed
  (``{"input_data": {"input_string": [[{"role", "content"}, ...]], "parameters": {...}}, "params": {}}``).
  The answer mirrors a managed online endpoint serving a chat-completion MLflow model: ``{"output": "..."}``
  for the conversation sent (LangChain's Azure ML chat formatter reads exactly ``response["output"]`` from
  such endpoints). Azure's chat-completion scorer takes one conversation per request; this server also
  accepts a few, and then answers a list of ``{"output": ...}`` objects in request order.
- ``POST /v1/chat/completions``: OpenAI-compatible, non-streaming, ``n=1``.
- ``GET /metrics`` (keyed): the request counters.

Both scoring routes need ``Authorization: Bearer <key>`` or ``api-key: <key>`` (primary or secondary), checked
with ``hmac.compare_digest``: 401 without a key or with a wrong one. Malformed payloads get 400 with the
reason; more concurrent requests than ``max_concurrent_requests`` get 429, as on Azure; a generation past
``request_timeout_ms`` gets 408. Only authenticated scoring requests count as activity (the idle check must
not be kept awake by health probes or by callers without a key); the count, the last request time and
per-minute counts are persisted to ``stats.json`` with atomic writes.

Generation runs on a worker thread that owns the model (``serving.Generator``): requests submit a
conversation and await a future, so the event loop never blocks, and gathering concurrent requests into one
``generate()`` call is a matter of ``max_batch`` (requests with the same parameters are batched).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from local.platform.serving.serving import (
    MAX_BODY_BYTES,
    ChatCompletionRequest,
    ChatModelLike,
    Completion,
    GenerationParams,
    Generator,
    Keys,
    Message,
    ScoreRequest,
    Stats,
    token_counter,
    validation_reason,
)
from local.platform.workspace import read_json, write_json_atomic

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
KEYS_FILE = "keys.json"
STATS_FILE = "stats.json"
SERVER_STATUS_FILE = "server_status.json"


# ------------------------------------------------------------------------------------------------ the app


@dataclass(frozen=True)
class ServeSettings:
    model_name: str = "model"
    max_concurrent_requests: int = 1
    request_timeout_ms: int = 90_000
    max_batch: int = 1
    batch_window_s: float = 0.0


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = request.headers.get("api-key")
    return api_key.strip() if api_key and api_key.strip() else None


class EndpointApp:
    """The Starlette app and the state behind it; the model loads on a thread after startup."""

    def __init__(
        self,
        *,
        keys: Keys,
        stats: Stats,
        load_model: Callable[[], ChatModelLike],
        settings: ServeSettings,
        on_loaded: Callable[[float], None] | None = None,
        on_load_failed: Callable[[str], None] | None = None,
    ) -> None:
        self.keys = keys
        self.stats = stats
        self.settings = settings
        self._load_model = load_model
        self._on_loaded = on_loaded
        self._on_load_failed = on_load_failed
        self.generator: Generator | None = None
        self.load_error: str | None = None
        self.loaded = threading.Event()
        self._in_flight = 0
        self.app = Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/score", self.score, methods=["POST"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/metrics", self.metrics, methods=["GET"]),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
        thread.start()
        try:
            yield
        finally:
            if self.generator is not None:
                self.generator.close()

    def _load(self) -> None:
        started = time.monotonic()
        try:
            model = self._load_model()
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"[:2000]
            log.error("the model could not be loaded: %s", self.load_error)
            if self._on_load_failed is not None:
                self._on_load_failed(self.load_error)
            return
        self.generator = Generator(
            model,
            max_batch=self.settings.max_batch,
            batch_window_s=self.settings.batch_window_s,
            count_tokens=token_counter(model),
        )
        seconds = time.monotonic() - started
        log.info("model loaded in %.1f s", seconds)
        self.loaded.set()
        if self._on_loaded is not None:
            self._on_loaded(seconds)

    # -- routes

    async def health(self, request: Request) -> JSONResponse:
        if self.load_error:
            return JSONResponse({"status": "failed", "reason": self.load_error}, status_code=503)
        if not self.loaded.is_set():
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "healthy"})

    async def metrics(self, request: Request) -> JSONResponse:
        denied = self._authorize(request)
        if denied is not None:
            return denied
        return JSONResponse(self.stats.snapshot())

    def _authorize(self, request: Request) -> JSONResponse | None:
        key = _presented_key(request)
        if key is None:
            return _error(
                401,
                "Unauthorized",
                "a key is required: Authorization: Bearer <key> or api-key: <key>",
                {"WWW-Authenticate": "Bearer"},
            )
        if not self.keys.accepts(key):
            return _error(401, "Unauthorized", "the key is not valid for this endpoint", {"WWW-Authenticate": "Bearer"})
        return None

    async def _body(self, request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise _BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise _BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadRequest(f"the body is not valid JSON ({exc})") from None

    async def _scoring(self, request: Request, handle: Callable[[Any], Any]) -> JSONResponse:
        denied = self._authorize(request)
        if denied is not None:
            return denied
        # Authenticated scoring requests count as activity, answered or not (as Azure's request metric).
        await asyncio.to_thread(self.stats.record)
        if self.load_error:
            return _error(503, "ModelLoadFailed", "the model could not be loaded")
        if self.generator is None:
            return _error(503, "ModelLoading", "the model is still loading", {"Retry-After": "5"})
        if self._in_flight >= self.settings.max_concurrent_requests:
            return _error(
                429,
                "TooManyRequests",
                f"more than max_concurrent_requests={self.settings.max_concurrent_requests} requests at once",
                {"Retry-After": "1"},
            )
        self._in_flight += 1
        try:
            body = await self._body(request)
            result = await asyncio.wait_for(handle(body), timeout=self.settings.request_timeout_ms / 1000)
            return JSONResponse(result)
        except _BadRequest as exc:
            return _error(400, "BadRequest", str(exc))
        except ValidationError as exc:
            return _error(400, "BadRequest", validation_reason(exc))
        except TimeoutError:
            return _error(
                408,
                "RequestTimeout",
                f"no answer within request_timeout_ms={self.settings.request_timeout_ms}",
            )
        except Exception:
            log.exception("scoring failed")
            return _error(500, "InternalServerError", "generation failed; see the endpoint log")
        finally:
            self._in_flight -= 1

    async def _complete(
        self, conversation: list[Message], params: GenerationParams, seed: int | None = None
    ) -> Completion:
        assert self.generator is not None
        future = self.generator.submit([m.model_dump() for m in conversation], params, seed)
        return await asyncio.wrap_future(future)

    async def score(self, request: Request) -> JSONResponse:
        async def handle(body: Any) -> Any:
            payload = ScoreRequest.model_validate(body)
            data = payload.input_data
            done = await asyncio.gather(*(self._complete(c, data.parameters) for c in data.input_string))
            answers = [{"output": c.text} for c in done]
            return answers[0] if len(answers) == 1 else answers

        return await self._scoring(request, handle)

    async def chat_completions(self, request: Request) -> JSONResponse:
        async def handle(body: Any) -> Any:
            payload = ChatCompletionRequest.model_validate(body)
            params = payload.params()
            done = await self._complete(payload.conversation(), params, payload.seed)
            prompt = done.prompt_tokens or 0
            completion = done.completion_tokens or 0
            finish = "length" if done.completion_tokens is not None and completion >= params.max_new_tokens else "stop"
            return {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": payload.model or self.settings.model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": done.text},
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }

        return await self._scoring(request, handle)


class _BadRequest(Exception):
    """The request body cannot be read as a JSON payload."""


# ------------------------------------------------------------------------------------------- the process


def _write_status(state_dir: Path, **fields: Any) -> None:
    write_json_atomic(state_dir / SERVER_STATUS_FILE, {**fields, "at": datetime.now(UTC).isoformat()})


def serve(state_dir: Path) -> int:
    """Load state and keys, start serving, load the model in the background; returns the exit code."""
    import uvicorn

    state = read_json(state_dir / STATE_FILE)
    if state is None:
        log.error("%s has no %s", state_dir, STATE_FILE)
        return 2
    try:
        keys = Keys.load(state_dir / KEYS_FILE)
    except ValueError as exc:
        _write_status(state_dir, state="Failed", code="BadArgument", message=str(exc))
        log.error("%s", exc)
        return 2
    model = state.get("model") or {}
    source = Path(str(model.get("source", "")))
    settings = ServeSettings(
        model_name=f"{model.get('name', 'model')}:{model.get('version', '')}",
        max_concurrent_requests=int(state.get("max_concurrent_requests", 1)),
        request_timeout_ms=int(state.get("request_timeout_ms", 90_000)),
        max_batch=int(state.get("max_batch", 1)),
        batch_window_s=float(state.get("batch_window_s", 0.0)),
    )
    failed = threading.Event()
    server: uvicorn.Server | None = None

    def load() -> ChatModelLike:
        from local.platform.serving.chat_model import load_chat_model

        if not (source / "MLmodel").is_file():
            raise FileNotFoundError(f"no MLflow model at {source}")
        loaded: ChatModelLike = load_chat_model(source, device=str(state.get("device") or "cpu"))
        return loaded

    def loaded(seconds: float) -> None:
        _write_status(state_dir, state="Ready", load_seconds=round(seconds, 2))

    def load_failed(reason: str) -> None:
        _write_status(state_dir, state="Failed", code="ModelLoadFailed", message=reason)
        failed.set()
        if server is not None:
            server.should_exit = True

    endpoint = EndpointApp(
        keys=keys,
        stats=Stats(state_dir / STATS_FILE),
        load_model=load,
        settings=settings,
        on_loaded=loaded,
        on_load_failed=load_failed,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            endpoint.app,
            host="127.0.0.1",
            port=int(state["port"]),
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    )
    _write_status(state_dir, state="Loading")
    log.info("serving %s on 127.0.0.1:%s", settings.model_name, state["port"])
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when the port cannot be bound
        _write_status(state_dir, state="Failed", code="ResourceNotReady", message=f"the server stopped ({exc.code})")
        return 1
    if failed.is_set():
        return 3
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve one model version for the local platform.")
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request's full URL at INFO; a webhook URL may carry a `code=` key.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return serve(args.state_dir.resolve())


if __name__ == "__main__":
    sys.exit(main())
