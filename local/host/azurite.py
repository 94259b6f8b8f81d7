"""Start and stop Azurite (the storage emulator) from the project's own ``npm install``.

Used by ``autopilot up``/``down`` and by the test session. Data, log and pid file live in the given
working directory: ``<workdir>/azurite/``, ``<workdir>/azurite.log``, ``<workdir>/azurite.pid``.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from local.common.exceptions import NotInstalledError, PortInUseError
from local.common.processes import (
    LOOPBACK,
    port_in_use,
    running_from_pid_file,
    start_detached,
    stop_pid_file,
    wait_for_port,
)
from shared.settings import AZURITE_CONNECTION_STRING

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Azurite's published development account, taken from the one place the app spells it out.
_DEV = dict(part.split("=", 1) for part in AZURITE_CONNECTION_STRING.split(";") if "=" in part)
DEV_ACCOUNT = _DEV["AccountName"]
DEV_KEY = _DEV["AccountKey"]


@dataclass(frozen=True)
class AzuritePorts:
    blob: int = 10000
    queue: int = 10001
    table: int = 10002

    def all(self) -> tuple[int, int, int]:
        return (self.blob, self.queue, self.table)


DEFAULT_PORTS = AzuritePorts()


@dataclass(frozen=True)
class AzuriteProcess:
    """A started (or already running) Azurite: its pid, ports and the connection string to reach it."""

    pid: int
    ports: AzuritePorts
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.ports)


def connection_string(ports: AzuritePorts = DEFAULT_PORTS, host: str = LOOPBACK) -> str:
    """The full development connection string for Azurite on ``ports`` (no ``UseDevelopmentStorage``)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://{host}:{ports.blob}/{DEV_ACCOUNT};"
        f"QueueEndpoint=http://{host}:{ports.queue}/{DEV_ACCOUNT};"
        f"TableEndpoint=http://{host}:{ports.table}/{DEV_ACCOUNT};"
    )


def ports_from_connection_string(conn: str) -> AzuritePorts | None:
    """The Azurite ports a loopback development connection string points at; None for anything else."""
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    found: dict[str, int] = {}
    for service, key in (("blob", "BlobEndpoint"), ("queue", "QueueEndpoint"), ("table", "TableEndpoint")):
        url = urlsplit(parts.get(key, ""))
        if url.hostname not in ("127.0.0.1", "localhost") or url.port is None:
            return None
        found[service] = url.port
    return AzuritePorts(**found)


def azurite_executable(project_root: Path | None = None) -> Path:
    """``node_modules/.bin/azurite`` of the project; NotInstalledError says to run ``npm install``."""
    project_root = project_root or PROJECT_ROOT
    exe = project_root / "node_modules" / ".bin" / "azurite"
    if not exe.exists():
        raise NotInstalledError(f"Azurite is not installed ({exe} is missing): run `npm install` in {project_root}")
    return exe


def pid_path(workdir: Path) -> Path:
    return workdir / "azurite.pid"


def running_azurite(workdir: Path) -> int | None:
    """The pid of the Azurite started for ``workdir`` if it still runs."""
    record = running_from_pid_file(pid_path(workdir))
    return record.pid if record else None


def start_azurite(
    workdir: Path,
    ports: AzuritePorts = DEFAULT_PORTS,
    *,
    project_root: Path | None = None,
    timeout_s: float = 60.0,
    on_wait: Callable[[float], None] | None = None,
) -> AzuriteProcess:
    """Start Azurite bound to 127.0.0.1 with its data in ``<workdir>/azurite`` and wait until it answers.

    Raises NotInstalledError, PortInUseError (a port is taken by another process) or StartTimeoutError.
    """
    exe = azurite_executable(project_root)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "azurite.log"
    pid = running_azurite(workdir)
    if pid is not None:
        return AzuriteProcess(pid, ports, log_path)
    for service, port in zip(("blob", "queue", "table"), ports.all(), strict=True):
        if port_in_use(port):
            raise PortInUseError(
                f"port {port} (Azurite {service}) is in use by another process: stop it, or point "
                "AzureWebJobsStorage at other loopback ports"
            )
    argv = [
        str(exe),
        "--silent",
        "--skipApiVersionCheck",
        "--loose",
        # Telemetry keeps Azurite alive after SIGTERM (it tries to flush to the internet) and is not wanted.
        "--disableTelemetry",
        "--location",
        str(workdir / "azurite"),
        "--blobHost",
        LOOPBACK,
        "--blobPort",
        str(ports.blob),
        "--queueHost",
        LOOPBACK,
        "--queuePort",
        str(ports.queue),
        "--tableHost",
        LOOPBACK,
        "--tablePort",
        str(ports.table),
    ]
    proc = start_detached(argv, log_path=log_path, pid_path=pid_path(workdir), name="azurite", cwd=workdir)
    try:
        for port in ports.all():
            wait_for_port(port, timeout_s=timeout_s, process=proc, name="Azurite", log_path=log_path, on_wait=on_wait)
    except Exception:
        stop_azurite(workdir)
        raise
    log.info("Azurite is up on ports %s/%s/%s (pid %s)", *ports.all(), proc.pid)
    return AzuriteProcess(proc.pid, ports, log_path, proc)


def stop_azurite(workdir: Path, timeout_s: float = 10.0) -> bool:
    """Stop the Azurite started for ``workdir``; True when one was running."""
    return stop_pid_file(pid_path(workdir), timeout_s)


def development_sas(hours: float = 24.0) -> str:
    """An account SAS on Azurite's development account (create and write, blobs and containers) for ``hours``:
    what ``test.http`` uploads a config with. Made on demand, so no signed token sits in the repository."""
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    return generate_account_sas(
        DEV_ACCOUNT,
        DEV_KEY,
        resource_types=ResourceTypes(container=True, object=True),
        permission=AccountSasPermissions(write=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=hours),
    )


if __name__ == "__main__":  # python -m local.host.azurite: print a development SAS for test.http
    print(development_sas())
