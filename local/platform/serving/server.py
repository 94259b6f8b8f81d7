"""The local endpoint: one HTTP server process on loopback serving its deployments' model versions.

Run as ``python -m local.platform.serving.server --state-dir DIR``; DIR holds ``state.json`` (port, model
source, request settings) and ``keys.json`` (mode 0600), see ``state.py``. Keys are read from that file only:
never from argv or the environment, and never logged.

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
secondary), checked with ``hmac.compare_digest`` by the routes' ``RequireKey`` middleware: 401 without a key
or with a wrong one. Errors use OpenAI's shape (``error.message``, ``type``, ``param``, ``code``), made by the
app's exception handlers (``ERROR_HANDLERS``). Malformed payloads get 400 naming the field; a body not
complete within ``BODY_TIMEOUT_S`` gets 408; more concurrent requests than
``max_concurrent_requests`` get 429, as on Azure, counted once the body has arrived (a client trickling
its body holds no slot); a generation past ``request_timeout_ms`` gets 408. Below the app, a header timeout
and a connection cap (``local/common/httplimits.py``). Only authenticated scoring requests, streams included, count as
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

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.common.httplimits import BODY_TIMEOUT_S, bounded_config, read_body
from local.common.statefiles import StateFileError
from local.platform.serving import openai_api
from local.platform.serving.batching import Completion, Handle, Sampling
from local.platform.serving.errors import ApiError, RequireKey, error_handlers
from local.platform.serving.serving import MAX_BODY_BYTES, MAX_JSON_DEPTH, Keys, Stats
from local.platform.serving.state import (
    DEPLOYMENT_STATS_FILE,
    KEYS_FILE,
    SERVER_STATUS_FILE,
    STATE_FILE,
    STATS_FILE,
    DeploymentSpec,
    EndpointState,
    LoadStatus,
    ServerState,
    ServerStatus,
)
from local.platform.serving.streaming import stream_completion
from shared.jsonlimits import json_depth_ok
from shared.scoring import ChatMessage, ScoreRequest, ScoringParameters

log = logging.getLogger(__name__)

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


def parse_json_body(raw: bytes) -> Any:
    """The JSON in a request body (any encoding ``json.loads`` takes); ApiError 400 saying what is wrong."""
    try:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})", code="BadRequest") from None
    if not json_depth_ok(text, MAX_JSON_DEPTH):  # before parsing: json.loads recurses
        raise ApiError(400, f"the body nests deeper than {MAX_JSON_DEPTH} levels", code="BadRequest")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})", code="BadRequest") from None


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
        keyed = [Middleware(RequireKey, keys=keys)]
        self.app = Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/score", self.score, methods=["POST"], middleware=keyed),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"], middleware=keyed),
                Route("/v1/models", self.models, methods=["GET"], middleware=keyed),
                Route("/v1/models/{model_id:path}", self.model, methods=["GET"], middleware=keyed),
                Route("/metrics", self.metrics, methods=["GET"], middleware=keyed),
            ],
            exception_handlers=error_handlers(
                request_timeout_ms=settings.request_timeout_ms, body_timeout_s=settings.body_timeout_s
            ),
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
        return JSONResponse(self.stats.snapshot())

    async def models(self, request: Request) -> Response:
        model = openai_api.model_object(self.settings.model_name, self.settings.created)
        return JSONResponse({"object": "list", "data": [model]})

    async def model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        if model_id != self.settings.model_name:
            raise ApiError(
                404,
                f"no model {model_id!r} on this endpoint; it serves {self.settings.model_name!r}",
                param="model",
                code="model_not_found",
            )
        return JSONResponse(openai_api.model_object(model_id, self.settings.created))

    # -- scoring

    async def _admit(self, request: Request) -> tuple[Any, Engine]:
        """Activity, loaded model and body (the key was checked on the way in); the slot is the caller's to
        take, once the body is in."""
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
        raw = await read_body(request, max_bytes=MAX_BODY_BYTES, timeout_s=self.settings.body_timeout_s)
        return parse_json_body(raw), self.engine

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

    def _release_slot(self) -> None:
        self._in_flight -= 1

    async def _complete(self, engine: Engine, conversation: list[dict[str, str]], sampling: Sampling) -> Completion:
        handle = engine.submit(conversation, sampling)
        try:
            return await asyncio.wrap_future(handle.future)
        finally:
            handle.cancel()  # a no-op once finished; a timed-out or abandoned request leaves the batch

    async def _answer(self, request: Request, handle: Callable[[Any, Engine], Any]) -> Response:
        """The shared path of the scoring routes: admit, take a slot, run ``handle`` within the request's
        time; what it raises is answered by the app's exception handlers."""
        body, engine = await self._admit(request)
        self._take_slot()
        streaming = False
        try:
            result = await asyncio.wait_for(handle(body, engine), timeout=self.settings.request_timeout_ms / 1000)
            streaming = isinstance(result, Response)  # a stream gives the slot back when it ends
            return result if streaming else JSONResponse(result)
        finally:
            if not streaming:
                self._release_slot()

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
                return stream_completion(
                    engine.submit,
                    conversation,
                    payload,
                    model,
                    request_timeout_ms=self.settings.request_timeout_ms,
                    on_end=self._release_slot,
                )
            done = await self._complete(engine, conversation, payload.sampling())
            return openai_api.completion_body(done, model=model, id_=openai_api.completion_id())

        return await self._answer(request, handle)


# ------------------------------------------------------------------------------------------- the process


class StatusReport:
    """``server_status.json``: each deployment's model as it loads or fails, and the server's own state."""

    def __init__(self, path: Path, deployments: Callable[[], list[str]], on_all_failed: Callable[[], None]) -> None:
        self.path = path
        self._deployments = deployments
        self._on_all_failed = on_all_failed
        self._statuses: dict[str, LoadStatus] = {}
        self._lock = threading.Lock()

    def server(self, state: ServerState, code: str | None = None, message: str | None = None) -> None:
        """The server's state before (or instead of) any deployment's."""
        ServerStatus(state=state, code=code, message=message, at=datetime.now(UTC)).save(self.path)

    def deployment(self, name: str, status: LoadStatus) -> None:
        with self._lock:
            self._statuses[name] = status
            self._write_locked()
            # A model that cannot load ends the process only when no deployment serves (as with one).
            names = self._deployments()
            if status.state == ServerState.FAILED and all(
                self._statuses.get(n, LoadStatus(state=ServerState.LOADING)).state == ServerState.FAILED for n in names
            ):
                self._on_all_failed()

    def changed(self) -> None:
        with self._lock:
            self._write_locked()

    def _write_locked(self) -> None:
        loading = LoadStatus(state=ServerState.LOADING)
        known = {n: self._statuses.get(n, loading) for n in self._deployments()}
        ready = [s for s in known.values() if s.state == ServerState.READY]
        top = ready[0] if ready else next(iter(known.values()), loading)
        ServerStatus(**top.model_dump(), deployments=known, at=datetime.now(UTC)).save(self.path)


def _deployment_app(
    state: EndpointState, name: str, spec: DeploymentSpec, keys: Keys, stats: Stats, report: StatusReport
) -> EndpointApp:
    """One deployment's app: its model, request settings and loader; ``report`` records its status."""
    source = Path(spec.model.source)
    settings = ServeSettings(
        model_name=f"{spec.model.name}:{spec.model.version}",
        max_concurrent_requests=spec.max_concurrent_requests,
        request_timeout_ms=spec.request_timeout_ms,
        created=int(spec.created_at.timestamp()),
    )
    # Every admitted request decodes in the same batch: max_concurrent_requests is the batch (capped).
    max_batch = min(settings.max_concurrent_requests, MAX_BATCH_LIMIT)

    def load() -> Engine:
        from local.platform.serving.batching import BatchEngine
        from local.platform.serving.chat_model import load_chat_model

        if not (source / "MLmodel").is_file():
            raise FileNotFoundError(f"no MLflow model at {source}")
        return BatchEngine(load_chat_model(source, device=spec.device), max_batch=max_batch)

    def loaded(seconds: float) -> None:
        report.deployment(name, LoadStatus(state=ServerState.READY, load_seconds=round(seconds, 2)))

    def failed(reason: str) -> None:
        report.deployment(name, LoadStatus(state=ServerState.FAILED, code="ModelLoadFailed", message=reason))

    return EndpointApp(
        keys=keys,
        stats=stats,  # one endpoint-wide activity file: the idle check looks at the endpoint as a whole
        load_model=load,
        settings=settings,
        on_loaded=loaded,
        on_load_failed=failed,
    )


def serve(state_dir: Path) -> int:
    """Load state and keys, start serving, load each deployment's model in the background; the exit code."""
    import uvicorn

    from local.platform.serving.deployments import DeploymentStats, Router

    status_path = state_dir / SERVER_STATUS_FILE
    try:
        state = EndpointState.load(state_dir / STATE_FILE)
        if state is None:
            log.error("%s has no %s", state_dir, STATE_FILE)
            return 2
        keys = Keys.load(state_dir / KEYS_FILE)
    except (StateFileError, ValueError) as exc:
        ServerStatus(state=ServerState.FAILED, code="BadArgument", message=str(exc), at=datetime.now(UTC)).save(
            status_path
        )
        log.error("%s", exc)
        return 2
    failed = threading.Event()
    server: uvicorn.Server | None = None
    stats = Stats(state_dir / STATS_FILE)

    def all_failed() -> None:
        failed.set()
        if server is not None:
            server.should_exit = True

    report = StatusReport(status_path, lambda: list(router.deployments), all_failed)
    router = Router(
        state_dir,
        lambda name, spec: _deployment_app(state, name, spec, keys, stats, report),
        DeploymentStats(state_dir / DEPLOYMENT_STATS_FILE),
        on_change=report.changed,
    )
    config = bounded_config(
        router,
        host="127.0.0.1",
        port=state.port,
        over_cap="close",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    report.server(ServerState.LOADING)
    log.info("serving endpoint %s on 127.0.0.1:%s", state.name, state.port)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when the port cannot be bound
        report.server(ServerState.FAILED, "ResourceNotReady", f"the server stopped ({exc.code})")
        return 1
    return 3 if failed.is_set() else 0


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
