"""Several deployments behind one local endpoint URL, as on a managed online endpoint.

``state.json`` (``state.EndpointState``) lists the endpoint's deployments (model, request settings, tags) and
its traffic. ``Router`` is the ASGI app the endpoint's server runs: it keeps one ``EndpointApp`` per
deployment (each its own model, limits and loader), picks the deployment of each request (the
``azureml-model-deployment`` header, as Azure ML does, else a weighted draw over ``traffic``), and counts
per deployment and minute the scoring requests and the deployment errors among their answers (5xx, or 424 as
Azure answers for a failing model), in
``deployment_stats.json``: what ``deployment_metrics`` reads to compare a canary with the deployment before
it. It re-reads ``state.json`` when it changes (looked at before each request and every ``STATE_POLL_S``),
so a deployment added, removed or re-weighted takes effect without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from local.common.statefiles import StateFileError
from local.platform.serving.state import MINUTE_FORMAT, STATE_FILE, DeploymentCounts, DeploymentSpec, EndpointState
from shared.platform.port import counts_as_deployment_error

log = logging.getLogger(__name__)

DEPLOYMENT_HEADER = "azureml-model-deployment"
SCORING_PATHS = frozenset({"/score", "/v1/chat/completions"})
STATE_POLL_S = 0.5
MINUTES_KEPT = 24 * 60


def pick(traffic: dict[str, int], names: list[str], draw: Callable[[], float] = random.random) -> str | None:
    """A weighted draw over the deployments with traffic; with no traffic set, the first deployment."""
    weighted = [(n, int(traffic.get(n) or 0)) for n in names if int(traffic.get(n) or 0) > 0]
    if not weighted:
        return names[0] if names else None
    point = draw() * sum(w for _, w in weighted)
    for name, weight in weighted:
        point -= weight
        if point < 0:
            return name
    return weighted[-1][0]


# --------------------------------------------------------------------------------------------- counters


class DeploymentStats:
    """Per deployment and minute: [scoring requests, 5xx answers], kept in ``deployment_stats.json``
    (``state.DeploymentCounts``)."""

    def __init__(self, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        try:
            counts = DeploymentCounts.load(path) or DeploymentCounts()
        except StateFileError as exc:
            log.warning("%s; counting from zero", exc)
            counts = DeploymentCounts()
        self.minutes = {name: dict(minutes) for name, minutes in counts.deployments.items()}

    def record(self, deployment: str, status: int) -> None:
        now = self._clock()
        minute = now.strftime(MINUTE_FORMAT)
        oldest = (now - timedelta(minutes=MINUTES_KEPT)).strftime(MINUTE_FORMAT)
        with self._lock:
            requests, errors = self.minutes.setdefault(deployment, {}).get(minute, (0, 0))
            self.minutes[deployment][minute] = (requests + 1, errors + counts_as_deployment_error(status))
            self.minutes = {n: {k: v for k, v in m.items() if k >= oldest} for n, m in self.minutes.items()}
            DeploymentCounts(deployments=self.minutes).save(self.path)


def metrics_since(counts: DeploymentCounts | None, since: datetime) -> dict[str, tuple[int, int]]:
    """(requests, errors) per deployment in the minutes from ``since``'s minute on."""
    floor = since.astimezone(UTC).strftime(MINUTE_FORMAT)
    out: dict[str, tuple[int, int]] = {}
    for name, minutes in (counts.deployments if counts else {}).items():
        rows = [v for k, v in minutes.items() if k >= floor]
        out[name] = (sum(r[0] for r in rows), sum(r[1] for r in rows))
    return out


# ----------------------------------------------------------------------------------------------- router


class Deployment(Protocol):
    """What the router needs of one deployment's app (``server.EndpointApp``)."""

    app: Any

    @property
    def ready(self) -> bool: ...

    @property
    def failed(self) -> str | None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


class Router:
    """The ASGI app of an endpoint with several deployments; see the module docstring."""

    def __init__(
        self,
        state_dir: Path,
        make: Callable[[str, DeploymentSpec], Deployment],
        stats: DeploymentStats,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self._make = make
        self.stats = stats
        self._on_change = on_change
        self.deployments: dict[str, Deployment] = {}
        self.traffic: dict[str, int] = {}
        self._version: tuple[int, int, int] | None = None

    # -- state

    def sync(self) -> None:
        """Match the deployments and traffic to ``state.json`` (loads new ones, unloads removed ones)."""
        path = self.state_dir / STATE_FILE
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        # An atomic write replaces the file: a new inode even within one tick of a coarse clock.
        version = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        if version == self._version:
            return
        self._version = version
        state = EndpointState.load(path)
        if state is None:
            return  # removed meanwhile: the endpoint is being deleted
        wanted = state.deployments
        for name in [n for n in self.deployments if n not in wanted]:
            log.info("deployment %s: removed; unloading", name)
            self.deployments.pop(name).close()
        for name, spec in wanted.items():
            if name not in self.deployments:
                log.info("deployment %s: loading", name)
                deployment = self._make(name, spec)
                self.deployments[name] = deployment
                deployment.start()
        self.traffic = dict(state.traffic)
        if self._on_change is not None:
            self._on_change()

    def close(self) -> None:
        for deployment in self.deployments.values():
            deployment.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(STATE_POLL_S)
            try:
                self.sync()
            except Exception:  # a half-written file, a model that fails to build: the next look tries again
                log.exception("reading the endpoint state failed")

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        self.sync()
        watcher = asyncio.ensure_future(self._watch())
        try:
            yield
        finally:
            watcher.cancel()
            self.close()

    # -- ASGI

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        with contextlib.suppress(Exception):  # a stat per request: a traffic change applies to the next one
            self.sync()
        if scope["path"] == "/health":
            await self._health(send)
            return
        names = list(self.deployments)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        named = headers.get(DEPLOYMENT_HEADER)
        chosen = named if named else pick(self.traffic, names)
        if chosen is None or chosen not in self.deployments:
            message = f"no deployment {named!r} on this endpoint" if named else "the endpoint has no deployment"
            await _json(send, 404, {"error": {"message": message, "type": "invalid_request_error", "code": "NotFound"}})
            return
        scoring = scope["path"] in SCORING_PATHS and scope.get("method") == "POST"

        async def watched(message: dict[str, Any]) -> None:
            # Counted before the answer leaves: whoever got an answer finds it counted.
            status = int(message.get("status") or 0) if message["type"] == "http.response.start" else 0
            if scoring and status and status != 401:  # callers without a key are nobody's traffic
                await asyncio.to_thread(self.stats.record, chosen, status)
            await send(message)

        await self.deployments[chosen].app(scope, receive, watched)

    async def _health(self, send: Any) -> None:
        apps = list(self.deployments.values())
        if any(d.ready for d in apps):
            await _json(send, 200, {"status": "healthy"})
        elif apps and all(d.failed for d in apps):
            await _json(send, 503, {"status": "failed", "reason": apps[0].failed})
        else:
            await _json(send, 503, {"status": "loading"})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        context = self.lifespan()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await context.__aenter__()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await context.__aexit__(None, None, None)
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
