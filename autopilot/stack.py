"""``autopilot up`` / ``down``: the local life cycle (Azurite + the local host), and the internal ``host``.

``up`` starts Azurite from the project's own ``npm install`` and the local host, both detached, with pid
and log files in the working directory (AUTOPILOT_WORKDIR, default ``.autopilot/``). ``down`` stops them and
every job or endpoint process recorded under ``<workdir>/pids/``. Their settings are the process environment
and local.settings.json (``autopilot.settings.local_twin``), never an azd environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from autopilot.settings import LOCAL_TWIN, local_twin
from local.common.exceptions import LocalHostError, PortInUseError
from local.common.processes import (
    LOOPBACK,
    port_in_use,
    running_from_pid_file,
    start_detached,
    stop_pid_file,
    stop_recorded_processes,
    wait_for_port,
)
from local.common.webhook_key import ensure_webhook_key, key_path
from local.host.azurite import (
    PROJECT_ROOT,
    AzuritePorts,
    ports_from_connection_string,
    running_azurite,
    start_azurite,
    stop_azurite,
)
from shared.settings import Settings

HOST_PID = "host.pid"
HOST_LOG = "host.log"
STOP_PASSES = 5


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = subparsers.add_parser(
        "up",
        help="start Azurite and the local host in the background",
        description="Start Azurite (from node_modules) and the local Functions host, detached; "
        "data, logs and pid files go to AUTOPILOT_WORKDIR (default .autopilot/).",
    )
    up.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for each service (default 90)")
    up.set_defaults(func=cmd_up, settings=LOCAL_TWIN)
    down = subparsers.add_parser(
        "down",
        help="stop the local host, Azurite and local jobs/endpoints",
        description="Stop everything `autopilot up` and the local platform started in AUTOPILOT_WORKDIR.",
    )
    down.set_defaults(func=cmd_down, settings=LOCAL_TWIN)
    # Internal: what `up` runs in the background. Left out of the help listing on purpose (no help=).
    host = subparsers.add_parser("host", description="Run the local Functions host in the foreground.")
    host.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    host.set_defaults(func=cmd_host, settings=LOCAL_TWIN)


def _settings() -> Settings:
    return local_twin()


class _Dots:
    """Progress for a wait: one dot a second on the same line."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._shown = 0
        print(f"  {label} ", end="", flush=True)

    def __call__(self, elapsed: float) -> None:
        if int(elapsed) > self._shown:
            self._shown = int(elapsed)
            print(".", end="", flush=True)

    def done(self, what: str = "ready") -> None:
        print(f" {what}", flush=True)


def _host_env(settings: Settings, key: str) -> dict[str, str]:
    env = dict(os.environ)
    env["AUTOPILOT_WEBHOOK_KEY"] = key
    env["AUTOPILOT_WORKDIR"] = str(settings.workdir)
    # The host must import this project's code from wherever `up` was run.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _start_azurite(settings: Settings, ports: AzuritePorts, timeout_s: float) -> bool:
    """Start Azurite unless it runs; True when it was already running."""
    pid = running_azurite(settings.workdir)
    if pid is not None:
        print(f"Azurite is already running (pid {pid}).")
        return True
    dots = _Dots(f"starting Azurite on {LOOPBACK}:{ports.blob}/{ports.queue}/{ports.table}")
    try:
        started = start_azurite(settings.workdir, ports, timeout_s=timeout_s, on_wait=dots)
    except LocalHostError:
        dots.done("failed")
        raise
    dots.done(f"ready (pid {started.pid})")
    return False


def _start_host(settings: Settings, key: str, timeout_s: float) -> bool:
    """Start the local host unless it runs; True when it was already running."""
    workdir = settings.workdir
    record = running_from_pid_file(workdir / HOST_PID)
    if record is not None:
        print(f"The local host is already running (pid {record.pid}).")
        return True
    port = settings.host_port
    if port_in_use(port):
        raise PortInUseError(
            f"port {port} (the local host's webhook, AUTOPILOT_HOST_PORT) is in use by another process: "
            "stop it or set AUTOPILOT_HOST_PORT"
        )
    dots = _Dots(f"starting the local host on {LOOPBACK}:{port}")
    log_path = workdir / HOST_LOG
    proc = start_detached(
        [sys.executable, "-m", "autopilot.main", "host"],
        log_path=log_path,
        pid_path=workdir / HOST_PID,
        name="host",
        cwd=Path.cwd(),
        env=_host_env(settings, key),
    )
    try:
        wait_for_port(port, timeout_s=timeout_s, process=proc, name="the local host", log_path=log_path, on_wait=dots)
    except LocalHostError:
        dots.done("failed")
        stop_pid_file(workdir / HOST_PID)
        raise
    dots.done(f"ready (pid {proc.pid})")
    return False


def _revive_endpoints(settings: Settings) -> list[str]:
    """`down` stops the local endpoint servers; `up` starts those of every deployed endpoint again."""
    if settings.platform != "local":
        return []
    from local.platform.endpoints import Endpoints
    from local.platform.workspace import Workspace

    return Endpoints(Workspace(settings.workdir)).revive_all()


def cmd_up(args: argparse.Namespace) -> int:
    try:
        settings = _settings()
    except ValueError as exc:
        print(f"autopilot up: {exc}", file=sys.stderr)
        return 1
    workdir = settings.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    key = ensure_webhook_key(workdir, settings.webhook_key)
    ports = ports_from_connection_string(settings.storage_connection)
    started = time.monotonic()
    try:
        if ports is None:
            print("AzureWebJobsStorage does not point at a local Azurite; not starting Azurite.")
            azurite_was_up = True
        else:
            azurite_was_up = _start_azurite(settings, ports, args.timeout)
        host_was_up = _start_host(settings, key, args.timeout)
    except LocalHostError as exc:
        print(f"autopilot up: {exc}", file=sys.stderr)
        return 1
    revived = _revive_endpoints(settings)
    if revived:
        print(f"Restarted {len(revived)} deployed endpoint(s) (same ports where free, same keys): {', '.join(revived)}")
    if azurite_was_up and host_was_up:
        print("Already up.")
        return 0
    print(f"Up in {time.monotonic() - started:.1f}s. Working directory: {workdir}")
    print(f"  webhook: http://{LOOPBACK}:{settings.host_port}/runtime/webhooks/EventGrid?functionName=<name>")
    if not settings.webhook_key:
        print(f"  webhook key: in {key_path(workdir)} (send it as x-functions-key)")
    print(f"  logs: {workdir / HOST_LOG}, {workdir / 'azurite.log'}")
    print("Stop with: autopilot down")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    try:
        settings = _settings()
    except ValueError as exc:
        print(f"autopilot down: {exc}", file=sys.stderr)
        return 1
    workdir = settings.workdir
    stopped: list[str] = []
    # The host first, so no function starts work against processes about to go.
    if stop_pid_file(workdir / HOST_PID, timeout_s=15.0):
        stopped.append("local host")
    # A job that ends while others are being stopped starts the next queued one in its slot (jobqueue.py):
    # stop again until a pass finds nothing new. Jobs still queued stay queued and start after `up`.
    for _ in range(STOP_PASSES):
        more = stop_recorded_processes(workdir)
        stopped.extend(more)
        if not more:
            break
    if stop_azurite(workdir):
        stopped.append("Azurite")
    print(f"Stopped: {', '.join(stopped)}." if stopped else "Nothing was running.")
    return 0


def cmd_host(args: argparse.Namespace) -> int:
    from local.host.host import run_host

    # The host's log file is its only output: log invocations whatever the CLI's verbosity, but not the
    # storage SDK's request-by-request HTTP logging (a poll every few seconds would drown everything).
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("azure").setLevel(logging.WARNING)
    # Started by hand (a debugger, .vscode/launch.json) rather than by `up`: the same key `up` would use, so
    # the platform's jobs and test.http reach it; the key stays in this process's environment only.
    if not os.environ.get("AUTOPILOT_WEBHOOK_KEY"):
        try:
            settings = _settings()
        except ValueError as exc:
            print(f"autopilot host: {exc}", file=sys.stderr)
            return 1
        os.environ["AUTOPILOT_WEBHOOK_KEY"] = ensure_webhook_key(settings.workdir, settings.webhook_key)
    return run_host(args.app)
