"""The local endpoint: one HTTP server process on loopback serving its deployments' model versions.

Run as ``python -m local.platform.serving.server --state-dir DIR``; DIR holds ``state.json`` (port, model
source, request settings) and ``keys.json`` (mode 0600). Keys are read from that file only: never from argv
or the environment, and never logged.

Routes:
- ``GET /health`` (no key): 200 ``{"status": "healthy"}`` once the model is loaded, 503 while loading.
- ``POST /score``: the Azure ML chat payload of the seed (``shared.scoring``: the contract the smoke test,
  the MLflow pyfunc and ``autopilot invoke`` share). The answer mirrors a managed online endpoint serving a
  chat-completion MLflow model: ``{"output": "..."}`` for the conversation sent (LangChain's Azure ML chat
  formatter reads exactly ``response["output"]``). Azure's scorer takes one conversation per request; this
  server also accepts a few, and then answers a list of ``{"output": ...}`` objects in request order.
- ``POST /v1/chat/completions``: OpenAI-compatible (``openai_api``), streaming over SSE included.
- ``GET /v1/models``, ``GET /v1/models/{id}``: the one model served.
- ``GET /metrics`` (keyed): the request counters.

An endpoint may hold several deployments (a canary beside the deployment it may replace): the process runs
``deployments.Router``, one ``EndpointApp`` per deployment behind the one URL, routed by the
``azureml-model-deployment`` header or by the endpoint's traffic weights, with per-deployment counts.

Every route but ``/health`` needs ``Authorization: Bearer <key>`` or ``api-key: <key>`` (primary or
secondary), checked with ``hmac.compare_digest``: 401 without a key or with a wrong one. Errors use
OpenAI's shape (``error.message``, ``type``, ``param``, ``code``). Malformed payloads get 400 naming the
field; a body not complete within ``BODY_TIMEOUT_S`` gets 408; more concurrent requests than
``max_concurrent_requests`` get 429, as on Azure, counted once the body has arrived (a client trickling
its body holds no slot); a generation past ``request_timeout_ms`` gets 408. Below the app, a header timeout
and a connection cap (``http_limits``). Only authenticated scoring requests, streams included, count as
activity (the idle check must not be kept awake by health probes or by callers without a key); the
count, the last request time and per-minute counts are persisted to ``stats.json`` with atomic writes.

Decoding is ``batching.BatchEngine``: one worker thread decodes every live request together (continuous
batching), so the event loop never blocks and concurrent clients share each forward pass.
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
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.platform.serving import openai_api
from local.platform.serving.batching import Completion, Handle, PromptTooLongError, Sampling
from local.platform.serving.http_limits import HEADER_TIMEOUT_S, MAX_CONNECTIONS, guarded_protocol
from local.platform.serving.serving import (  # the file names live there: the platform reads them without torch
    KEYS_FILE,
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    SERVER_STATUS_FILE,
    STATE_FILE,
    STATS_FILE,
    Keys,
    Stats,
    json_depth_exceeds,
)
from local.platform.workspace import read_json, write_json_atomic
from shared.scoring import ChatMessage, ScoreRequest, ScoringParameters

log = logging.getLogger(__name__)

BODY_TIMEOUT_S = 30.0
MAX_BATCH_LIMIT = 32  # rows decoded together; beyond this a step's cost grows about linearly anyway


class Engine(Protocol):
    """What decodes: ``batching.BatchEngine`` in the server, a stand-in in unit tests."""

    def submit(
        self, conversation: list[dict[str, str]], sampling: Sampling, on_text: Callable[[str], None] | None = None
    ) -> Handle: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------------------------------ the app


@dataclass(frozen=True)
class ServeSettings:
    model_name: str = "model"
    max_concurrent_requests: int = 1
    request_timeout_ms: int = 90_000
    body_timeout_s: float = BODY_TIMEOUT_S
    created: int = 0


class ApiError(Exception):
    """A request answered with an error: status, OpenAI error type, the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = openai_api.error_body(self.message, type_=self.type, param=self.param, code=self.code)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _bad_request(exc: ValidationError) -> ApiError:
    message, param = openai_api.validation_error(exc)
    return ApiError(400, message, param=param, code="BadRequest")


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = request.headers.get("api-key")
    return api_key.strip() if api_key and api_key.strip() else None


def _sampling(parameters: ScoringParameters) -> Sampling:
    return Sampling(
        max_new_tokens=parameters.max_new_tokens,
        sample=parameters.sampling,
        temperature=parameters.temperature,
        top_p=parameters.top_p,
        seed=parameters.seed,
    )


def _dicts(conversation: Sequence[ChatMessage]) -> list[dict[str, str]]:
    return [m.model_dump() for m in conversation]


class EndpointApp:
    """The Starlette app and the state behind it; the model loads on a thread after startup."""

    def __init__(
        self,
        *,
        keys: Keys,
        stats: Stats,
        load_model: Callable[[], Engine],
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
        self.engine: Engine | None = None
        self.load_error: str | None = None
        self.loaded = threading.Event()
        self._in_flight = 0
        self._closed = False
        self.app = Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/score", self.score, methods=["POST"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{model_id:path}", self.model, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.start()
        try:
            yield
        finally:
            self.close()

    # -- as one deployment of a ``deployments.Router`` (which runs no lifespan of ours)

    def start(self) -> None:
        """Load the model on a thread; requests get 503 until it is loaded."""
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        if self.engine is not None:
            self.engine.close()

    @property
    def ready(self) -> bool:
        return self.loaded.is_set() and not self._closed

    @property
    def failed(self) -> str | None:
        return self.load_error

    def _load(self) -> None:
        started = time.monotonic()
        try:
            self.engine = self._load_model()
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"[:2000]
            log.error("the model could not be loaded: %s", self.load_error)
            if self._on_load_failed is not None:
                self._on_load_failed(self.load_error)
            return
        if self._closed:  # removed while it loaded
            self.engine.close()
            return
        seconds = time.monotonic() - started
        log.info("model loaded in %.1f s", seconds)
        self.loaded.set()
        if self._on_loaded is not None:
            self._on_loaded(seconds)

    # -- plain routes

    async def health(self, request: Request) -> JSONResponse:
        if self.load_error:
            return JSONResponse({"status": "failed", "reason": self.load_error}, status_code=503)
        if not self.loaded.is_set():
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "healthy"})

    async def metrics(self, request: Request) -> Response:
        return self._keyed(request) or JSONResponse(self.stats.snapshot())

    async def models(self, request: Request) -> Response:
        denied = self._keyed(request)
        if denied is not None:
            return denied
        model = openai_api.model_object(self.settings.model_name, self.settings.created)
        return JSONResponse({"object": "list", "data": [model]})

    async def model(self, request: Request) -> Response:
        denied = self._keyed(request)
        if denied is not None:
            return denied
        model_id = request.path_params["model_id"]
        if model_id != self.settings.model_name:
            return ApiError(
                404,
                f"no model {model_id!r} on this endpoint; it serves {self.settings.model_name!r}",
                param="model",
                code="model_not_found",
            ).response()
        return JSONResponse(openai_api.model_object(model_id, self.settings.created))

    def _keyed(self, request: Request) -> JSONResponse | None:
        key = _presented_key(request)
        if key is None:
            message = "a key is required: Authorization: Bearer <key> or api-key: <key>"
        elif not self.keys.accepts(key):
            message = "the key is not valid for this endpoint"
        else:
            return None
        return ApiError(
            401, message, type_="authentication_error", code="Unauthorized", headers={"WWW-Authenticate": "Bearer"}
        ).response()

    # -- scoring

    async def _body(self, request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise ApiError(400, f"the body is larger than {MAX_BODY_BYTES} bytes", code="BadRequest")
        try:
            raw = await asyncio.wait_for(self._read(request), timeout=self.settings.body_timeout_s)
        except TimeoutError:
            raise ApiError(
                408, f"the body did not arrive within {self.settings.body_timeout_s:g} s", code="RequestTimeout"
            ) from None
        too_deep = ApiError(400, f"the body nests deeper than {MAX_JSON_DEPTH} levels", code="BadRequest")
        try:
            body = json.loads(raw)
        except RecursionError:
            raise too_deep from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON ({exc})", code="BadRequest") from None
        if json_depth_exceeds(body):
            raise too_deep
        return body

    @staticmethod
    async def _read(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ApiError(400, f"the body is larger than {MAX_BODY_BYTES} bytes", code="BadRequest")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _admit(self, request: Request) -> tuple[Any, Engine]:
        """Key, activity, loaded model and body; the slot is the caller's to take (once the body is in)."""
        denied = self._keyed(request)
        if denied is not None:
            raise _Answered(denied)
        # Authenticated scoring requests count as activity, answered or not (as Azure's request metric).
        await asyncio.to_thread(self.stats.record)
        if self.load_error:
            raise ApiError(503, "the model could not be loaded", type_="server_error", code="ModelLoadFailed")
        if self.engine is None:
            raise ApiError(
                503,
                "the model is still loading",
                type_="server_error",
                code="ModelLoading",
                headers={"Retry-After": "5"},
            )
        return await self._body(request), self.engine

    def _take_slot(self) -> None:
        if self._in_flight >= self.settings.max_concurrent_requests:
            raise ApiError(
                429,
                f"more than max_concurrent_requests={self.settings.max_concurrent_requests} requests at once",
                type_="rate_limit_error",
                code="TooManyRequests",
                headers={"Retry-After": "1"},
            )
        self._in_flight += 1

    async def _complete(self, engine: Engine, conversation: list[dict[str, str]], sampling: Sampling) -> Completion:
        handle = engine.submit(conversation, sampling)
        try:
            return await asyncio.wrap_future(handle.future)
        finally:
            handle.cancel()  # a no-op once finished; a timed-out or abandoned request leaves the batch

    async def _answer(self, request: Request, handle: Callable[[Any, Engine], Any]) -> Response:
        """The shared path of the scoring routes: admit, take a slot, run ``handle``, map errors."""
        slot = False
        try:
            body, engine = await self._admit(request)
            self._take_slot()
            slot = True
            timeout = self.settings.request_timeout_ms / 1000
            result = await asyncio.wait_for(handle(body, engine), timeout=timeout)
            if isinstance(result, Response):
                slot = False  # a stream releases the slot when it ends
                return result
            return JSONResponse(result)
        except _Answered as answered:
            return answered.response
        except ApiError as exc:
            return exc.response()
        except ValidationError as exc:
            return _bad_request(exc).response()
        except PromptTooLongError as exc:
            return ApiError(400, str(exc), param="messages", code="context_length_exceeded").response()
        except TimeoutError:
            return ApiError(
                408,
                f"no answer within request_timeout_ms={self.settings.request_timeout_ms}",
                code="RequestTimeout",
            ).response()
        except ClientDisconnect:
            return Response(status_code=499)
        except Exception:
            log.exception("scoring failed")
            return ApiError(
                500, "generation failed; see the endpoint log", type_="server_error", code="InternalServerError"
            ).response()
        finally:
            if slot:
                self._in_flight -= 1

    async def score(self, request: Request) -> Response:
        async def handle(body: Any, engine: Engine) -> Any:
            data = ScoreRequest.model_validate(body).input_data
            sampling = _sampling(data.parameters)
            done = await asyncio.gather(*(self._complete(engine, _dicts(c), sampling) for c in data.input_string))
            answers = [{"output": c.text.strip()} for c in done]
            return answers[0] if len(answers) == 1 else answers

        return await self._answer(request, handle)

    async def chat_completions(self, request: Request) -> Response:
        async def handle(body: Any, engine: Engine) -> Any:
            payload = openai_api.ChatCompletionRequest.model_validate(body)
            model = payload.model or self.settings.model_name
            conversation = _dicts(payload.conversation())
            if payload.stream:
                return self._stream(engine, conversation, payload, model)
            done = await self._complete(engine, conversation, payload.sampling())
            return openai_api.completion_body(done, model=model, id_=openai_api.completion_id())

        return await self._answer(request, handle)

    def _stream(
        self,
        engine: Engine,
        conversation: list[dict[str, str]],
        payload: openai_api.ChatCompletionRequest,
        model: str,
    ) -> EventSourceResponse:
        """SSE ``data:`` chunks as text is decoded, then ``[DONE]``; the slot is held until the stream ends."""
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[str] = asyncio.Queue()

        def on_text(text: str) -> None:  # called on the engine's thread
            loop.call_soon_threadsafe(deltas.put_nowait, text)

        handle = engine.submit(conversation, payload.sampling(), on_text)
        done_future = asyncio.wrap_future(handle.future)
        id_, created = openai_api.completion_id(), int(time.time())

        def piece(**fields: Any) -> str:
            return json.dumps(openai_api.chunk(id_=id_, model=model, created=created, **fields))

        deadline = loop.time() + self.settings.request_timeout_ms / 1000
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                handle.cancel()
                self._in_flight -= 1

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
                message = f"no answer within request_timeout_ms={self.settings.request_timeout_ms}"
                yield json.dumps(openai_api.error_body(message, type_="timeout", code="RequestTimeout"))
            except Exception:
                log.exception("streaming failed")
                yield json.dumps(openai_api.error_body("generation failed; see the endpoint log", type_="server_error"))
            finally:
                release()
            yield "[DONE]"

        # The background task releases the slot too, should the client leave before the stream starts.
        return EventSourceResponse(events(), sep="\n", ping=15, background=BackgroundTask(release))


class _Answered(Exception):
    """A response already made (a 401): return it as it is."""

    def __init__(self, response: Response) -> None:
        super().__init__("answered")
        self.response = response


# ------------------------------------------------------------------------------------------- the process


def _write_status(state_dir: Path, **fields: Any) -> None:
    write_json_atomic(state_dir / SERVER_STATUS_FILE, {**fields, "at": datetime.now(UTC).isoformat()})


def _deployment_app(
    state_dir: Path,
    state: dict[str, Any],
    name: str,
    spec: dict[str, Any],
    keys: Keys,
    stats: Stats,
    report: Callable[..., None],
) -> EndpointApp:
    """One deployment's app: its model, request settings and loader; ``report`` records its status."""
    model = spec.get("model") or {}
    source = Path(str(model.get("source", "")))
    created = spec.get("created_at") or state.get("created_at")
    settings = ServeSettings(
        model_name=f"{model.get('name', 'model')}:{model.get('version', '')}",
        max_concurrent_requests=int(spec.get("max_concurrent_requests") or 1),
        request_timeout_ms=int(spec.get("request_timeout_ms") or 90_000),
        created=int(datetime.fromisoformat(created).timestamp()) if isinstance(created, str) else int(time.time()),
    )
    # Every admitted request decodes in the same batch: max_concurrent_requests is the batch (capped).
    max_batch = int(state.get("max_batch") or min(settings.max_concurrent_requests, MAX_BATCH_LIMIT))

    def load() -> Engine:
        from local.platform.serving.batching import BatchEngine
        from local.platform.serving.chat_model import load_chat_model

        if not (source / "MLmodel").is_file():
            raise FileNotFoundError(f"no MLflow model at {source}")
        return BatchEngine(load_chat_model(source, device=str(spec.get("device") or "cpu")), max_batch=max_batch)

    return EndpointApp(
        keys=keys,
        stats=stats,  # one endpoint-wide activity file: the idle check looks at the endpoint as a whole
        load_model=load,
        settings=settings,
        on_loaded=lambda seconds: report(name, state="Ready", load_seconds=round(seconds, 2)),
        on_load_failed=lambda reason: report(name, state="Failed", code="ModelLoadFailed", message=reason),
    )


def serve(state_dir: Path) -> int:
    """Load state and keys, start serving, load each deployment's model in the background; the exit code."""
    import uvicorn

    from local.platform.serving.deployments import DEPLOYMENT_STATS_FILE, DeploymentStats, Router

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
    failed = threading.Event()
    server: uvicorn.Server | None = None
    stats = Stats(state_dir / STATS_FILE)
    statuses: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    router: Router

    def write_locked() -> None:
        known = {n: statuses.get(n, {"state": "Loading"}) for n in router.deployments}
        ready = [s for s in known.values() if s.get("state") == "Ready"]
        top: dict[str, Any] = ready[0] if ready else next(iter(known.values()), {"state": "Loading"})
        _write_status(state_dir, **{**top, "deployments": known})

    def report(name: str, **fields: Any) -> None:
        with lock:
            statuses[name] = fields
            write_locked()
            # A model that cannot load ends the process only when no deployment serves (as with one).
            if fields.get("state") == "Failed" and all(
                statuses.get(n, {}).get("state") == "Failed" for n in router.deployments
            ):
                failed.set()
                if server is not None:
                    server.should_exit = True

    def changed() -> None:
        with lock:
            write_locked()

    def make(name: str, spec: dict[str, Any]) -> EndpointApp:
        return _deployment_app(state_dir, state, name, spec, keys, stats, report)

    router = Router(state_dir, make, DeploymentStats(state_dir / DEPLOYMENT_STATS_FILE), on_change=changed)
    server = uvicorn.Server(
        uvicorn.Config(
            router,
            host="127.0.0.1",
            port=int(state["port"]),
            log_level="warning",
            access_log=False,
            lifespan="on",
            http=guarded_protocol(header_timeout_s=HEADER_TIMEOUT_S, max_connections=MAX_CONNECTIONS),
        )
    )
    _write_status(state_dir, state="Loading")
    log.info("serving endpoint %s on 127.0.0.1:%s", state.get("name"), state["port"])
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
