"""An endpoint's directory (``<workdir>/platform/endpoints/<name>/``): its files and the types of the two that
two processes share.

- ``state.json`` (``EndpointState``): written by the platform (``endpointstore.py``, under the endpoint's
  lock), read by the endpoint's server, which serves its ``deployments`` with its ``traffic``.
- ``server_status.json`` (``ServerStatus``): written by the server as each deployment's model loads or
  fails, read by the platform.
- ``stats.json`` (``RequestCounts``) and ``deployment_stats.json`` (``DeploymentCounts``): the request
  counters the server keeps (``serving.Stats``, ``deployments.DeploymentStats``) and the platform reads (the
  idle check's activity, a canary's verdict).
- ``keys.json`` (0600, written once at creation) and ``server.log``.

Torch-free: the platform reads these files in processes that never load a model.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from local.common.statefiles import StateFile
from shared.platform.port import DeploymentState

STATE_FILE = "state.json"
KEYS_FILE = "keys.json"
STATS_FILE = "stats.json"
DEPLOYMENT_STATS_FILE = "deployment_stats.json"
SERVER_STATUS_FILE = "server_status.json"
LOG_FILE = "server.log"

DEFAULT_REQUEST_TIMEOUT_MS = 90_000


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSource(_Record):
    """The registered model version a deployment serves, and the MLflow model directory it loads."""

    name: str
    version: str
    id: str
    source: str


class DeploymentSpec(_Record):
    """What the server needs to serve one deployment."""

    model: ModelSource
    instance_type: str
    device: str  # cpu | cuda
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    max_concurrent_requests: int = 1
    tags: dict[str, str]
    created_at: datetime


class EndpointState(StateFile):
    """``state.json``: the endpoint, its deployments and traffic, and the watch kept on its server process."""

    schema_version: Literal[1] = 1
    name: str
    description: str = ""
    tags: dict[str, str]  # the endpoint's, from the request that created it
    created_at: datetime
    instance_count: int = 1
    port: int
    pid: int | None = None
    state: DeploymentState
    error_code: str | None = None
    error_message: str | None = None
    ready_at: datetime | None = None
    traffic: dict[str, int] = {}
    deployments: dict[str, DeploymentSpec] = {}
    # The server process, restarted after a crash or a stall (``endpointservers.py``).
    restarts: int = 0
    restarted_at: datetime | None = None
    last_restart_reason: str | None = None
    create_restarts: int = 0  # restarts of a server that died while loading, before it first answered
    answering: bool = False  # has answered a probe since its last start
    failed_probes: int = 0  # probes in a row it did not answer, once answering
    first_failed_probe_at: datetime | None = None
    process_exited: bool = False  # gone, and not restarted yet (the restart is backing off)

    def url(self, path: str = "/score") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def longest_request_timeout_ms(self) -> int:
        timeouts = [d.request_timeout_ms for d in self.deployments.values()]
        return max(timeouts, default=DEFAULT_REQUEST_TIMEOUT_MS)


class ServerState(StrEnum):
    """A deployment's model in the server process (and the server's as a whole)."""

    LOADING = "Loading"
    READY = "Ready"
    FAILED = "Failed"


class LoadStatus(_Record):
    """One deployment's model as the server reports it: loading, ready (and how long it took) or failed."""

    state: ServerState
    code: str | None = None
    message: str | None = None
    load_seconds: float | None = None


class ServerStatus(StateFile):
    """``server_status.json``: the server's own state (that of its first ready deployment, else of its first
    one) and each deployment's; ``deployments`` is None until the server has read its deployments."""

    schema_version: Literal[1] = 1
    state: ServerState
    code: str | None = None
    message: str | None = None
    load_seconds: float | None = None
    deployments: dict[str, LoadStatus] | None = None
    at: datetime

    @property
    def failed(self) -> bool:
        return self.state == ServerState.FAILED


MINUTE_FORMAT = "%Y-%m-%dT%H:%M"  # the key of a minute's counts (UTC); sorted as text, in time order


class RequestCounts(StateFile):
    """``stats.json``: the endpoint's authenticated scoring requests, all its deployments together."""

    schema_version: Literal[1] = 1
    request_count: int = 0
    last_request_at: datetime | None = None
    minutes: dict[str, int] = {}  # the last day's, by minute


class DeploymentCounts(StateFile):
    """``deployment_stats.json``: per deployment and minute, [scoring requests, 5xx answers], the last day."""

    schema_version: Literal[1] = 1
    deployments: dict[str, dict[str, tuple[int, int]]] = {}
