"""The local host: blob polling, the Event Grid webhook, timers and queue polling for one FunctionApp, in one process.

In-process use (end-to-end tests drive it deterministically)::

    host = LocalHost(function_app.app, Settings.from_env())
    host.poll_once()          # one blob-polling pass, in this thread
    host.fire_timer("reconcile")
    host.poll_queues_once()   # every queue message visible now, in this thread
    TestClient(host.webhook_app).post(...)
    host.start(); ...; host.stop()   # background threads + uvicorn on 127.0.0.1:<AUTOPILOT_HOST_PORT>

``run_host`` is the foreground process ``autopilot up`` starts (``autopilot host``).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from local.common.exceptions import HostConfigError, LocalHostError, PortInUseError, StartTimeoutError
from local.common.httplimits import bounded_config
from local.common.processes import LOOPBACK, port_in_use
from local.host.blobpoller import BlobPoller
from local.host.discovery import Functions, Invocation, discover
from local.host.queuepoller import POLL_SECONDS as QUEUE_POLL_SECONDS
from local.host.queuepoller import QueuePoller
from local.host.timers import Clock, TimerScheduler, utc_now
from local.host.webhook import WEBHOOK_PATH, build_webhook_app
from shared.settings import Settings, load_local_settings
from shared.storage import StorageConfigError, StorageConnection
from shared.telemetry_setup import configure_local

log = logging.getLogger(__name__)

STORAGE_SETTING = "AzureWebJobsStorage"


def default_host_id() -> str:
    """A host id like the runtime's: the machine name, lower-case, at most 32 characters."""
    host_id = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower())[:32].strip("-")
    return host_id or "localhost"


class LocalHost:
    """Drives one FunctionApp's blob, Event Grid and timer functions (any ``azure.functions.FunctionApp``)."""

    def __init__(
        self,
        app: Any,
        settings: Settings,
        *,
        host_id: str | None = None,
        clock: Clock = utc_now,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self._env = os.environ if env is None else env
        self.functions: Functions = discover(app)
        self.webhook_app = build_webhook_app(self.functions.event_grid, settings.webhook_key)
        self.blob_poller = BlobPoller(
            self.functions.blob,
            host_connection=settings.storage(),
            resolve_connection=self._connection,
            host_id=host_id or default_host_id(),
        )
        self.timers = TimerScheduler(self.functions.timer, clock, self._env)
        self.queue_poller = QueuePoller(self.functions.queue, self._connection, self._env)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: uvicorn.Server | None = None

    def _connection(self, name: str) -> StorageConnection:
        if name == STORAGE_SETTING:
            return self.settings.storage()
        try:
            return StorageConnection.from_settings(
                name, self._env, allow_developer_credentials=self.settings.allow_developer_credentials
            )
        except StorageConfigError as exc:
            raise HostConfigError(f"trigger connection: {exc}") from None

    def poll_once(self) -> list[Invocation]:
        """One pass over the blob-trigger containers, in this thread."""
        return self.blob_poller.poll_once()

    def poll_queues_once(self) -> list[Invocation]:
        """Every queue-trigger message visible now, in this thread."""
        return self.queue_poller.poll_once()

    def fire_timer(self, name: str, past_due: bool = False) -> Invocation:
        """Run a timer function now (after any run of it in progress)."""
        return self.timers.fire(name, past_due)

    @property
    def webhook_url(self) -> str:
        """The webhook's address, without the key."""
        return f"http://{LOOPBACK}:{self.settings.host_port}{WEBHOOK_PATH}"

    def start(
        self, *, serve_http: bool = True, poll_blobs: bool = True, run_timers: bool = True, poll_queues: bool = True
    ) -> None:
        """Start the background parts; PortInUseError when the webhook port is taken."""
        self._stop.clear()
        if serve_http:
            self._start_server()
        if poll_blobs and self.functions.blob:
            thread = threading.Thread(
                target=self.blob_poller.run,
                args=(self._stop, self.settings.blob_poll_seconds),
                name="blob-poller",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        if run_timers:
            self.timers.start(self._stop)
        if poll_queues and self.functions.queue:
            thread = threading.Thread(
                target=self.queue_poller.run, args=(self._stop, QUEUE_POLL_SECONDS), name="queue-poller", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _start_server(self) -> None:
        port = self.settings.host_port
        if port_in_use(port):
            raise PortInUseError(f"port {port} (AUTOPILOT_HOST_PORT, the webhook) is in use by another process")
        # A header deadline, a connection cap and keep-alive: half-open connections cannot pile up.
        config = bounded_config(
            self.webhook_app,
            host=LOOPBACK,
            port=port,
            over_cap="503",  # Event Grid retries a 503; a closed connection tells a caller nothing
            # Access logs would carry query strings, and with them the webhook key.
            access_log=False,
            log_config=None,
            log_level="warning",
            lifespan="off",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="webhook", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise StartTimeoutError(f"the webhook server did not start on {LOOPBACK}:{port}")
            time.sleep(0.05)
        self._server = server
        self._threads.append(thread)
        log.info("webhook listening on %s", self.webhook_url)

    def healthy(self) -> bool:
        """Whether every started background part still runs."""
        return all(t.is_alive() for t in self._threads) and not self._stop.is_set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the background parts; a function running now finishes first (up to ``timeout_s``)."""
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(timeout_s)
        self.timers.join(timeout_s)
        self._threads.clear()
        self._server = None

    def __enter__(self) -> LocalHost:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def load_app(spec: str) -> Any:
    """``module:attribute`` (default attribute ``app``) imported from the current directory."""
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:  # the function app sits at the project root, like under `func start`
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    return getattr(module, attr or "app")


def run_host(app_spec: str = "function_app:app", settings_file: Path | None = None) -> int:
    """Run the host in the foreground until SIGTERM/SIGINT; returns the process exit code."""
    load_local_settings(settings_file or Path.cwd() / "local.settings.json")
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        log.error("settings: %s", exc)
        return 1
    # Before the app loads: its spans and logs go to files under the work dir (or OTLP); docs/observability.md.
    log.info("telemetry: %s", configure_local(settings.workdir))
    if not settings.webhook_key:
        log.error(
            "AUTOPILOT_WEBHOOK_KEY is empty: the local host will not serve an unauthenticated webhook. "
            "Start it with `autopilot up` (which generates a key) or set the key yourself."
        )
        return 1
    try:
        app = load_app(app_spec)
        host = LocalHost(app, settings)
    except LocalHostError as exc:
        log.error("%s", exc)
        return 1
    except Exception:
        log.exception("could not load the function app %s", app_spec)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("local host: %s received; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        host.start()
    except LocalHostError as exc:
        log.error("%s", exc)
        host.stop()
        return 1
    functions = host.functions
    log.info(
        "local host running: %s blob, %s Event Grid, %s timer, %s queue function(s); polling every %ss",
        len(functions.blob),
        len(functions.event_grid),
        len(functions.timer),
        len(functions.queue),
        settings.blob_poll_seconds,
    )
    code = 0
    while not stop.wait(1.0):
        if not host.healthy():
            log.error("a part of the local host stopped unexpectedly; shutting down")
            code = 1
            break
    host.stop()
    log.info("local host stopped")
    return code
