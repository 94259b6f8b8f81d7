"""Local online endpoints: one server process per endpoint on 127.0.0.1, its state, keys and activity.

``endpoints/<name>/`` holds ``state.json`` (written here, under a per-endpoint lock; its ``deployments``
are served behind the one URL, see ``serving/deployments.py``), ``deployment_stats.json`` (per-deployment
request and 5xx counts), ``keys.json`` (0600,
written once at creation, read by the server from its path), ``server_status.json`` and ``stats.json``
(written by the server) and ``server.log``. The process is recorded in ``<workdir>/pids/endpoint-<name>.pid``
so ``autopilot down`` stops it too. Deleting stops the process group and removes the whole directory, keys
included.
"""

from __future__ import annotations

import copy
import logging
import os
import secrets
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.common import processes
from local.platform.serving import serving
from local.platform.serving.deployments import DEPLOYMENT_HEADER, DEPLOYMENT_STATS_FILE, deployments_of, metrics_since
from local.platform.workspace import (
    Workspace,
    child_env,
    file_lock,
    read_json,
    safe_name,
    write_json_atomic,
)
from shared.exceptions import NotFoundError, NotManagedError, PlatformError, TransientPlatformError
from shared.naming import TAG_RUN_ID, is_managed
from shared.platform.port import (
    MAX_DEPLOYMENTS_PER_ENDPOINT,
    DeploymentInfo,
    DeploymentMetrics,
    DeploymentState,
    DeploymentSummary,
    DeployRequest,
    EndpointActivity,
    EndpointInfo,
)

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
# A managed endpoint restarts a crashed or unresponsive container; so does the local one, at most this often.
RESTART_BACKOFF_S = 30.0
# Failed health probes of a live process in a row before it is taken as stalled and restarted.
UNRESPONSIVE_PROBES = 3
# A server that dies while loading without reporting a failure of its own (killed, or stopped by `down`) is
# started again this many times before the deployment fails, as a managed endpoint restarts its container.
CREATE_RESTARTS = 2
PORT_RELEASE_WAIT_S = 5.0
LOG_FILE = "server.log"
CREATING = DeploymentState.CREATING.value
SUCCEEDED = DeploymentState.SUCCEEDED.value
FAILED = DeploymentState.FAILED.value


# What an endpoint server may see of our environment: it loads a model and answers HTTP, so it needs no key,
# connection string or token (the webhook key, storage and Azure credentials stay with the host and jobs).
SERVER_ENV_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV"}
    | {"HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "CUDA_VISIBLE_DEVICES", "AUTOPILOT_LOCAL_DTYPE"}
)
SERVER_ENV_PREFIXES = ("LC_", "OMP_", "MKL_", "PYTORCH_", "TORCH_")


def server_env() -> dict[str, str]:
    """The environment of an endpoint server process: an allow list of what it uses, nothing secret."""
    return {
        name: value
        for name, value in child_env().items()
        if name in SERVER_ENV_NAMES or name.startswith(SERVER_ENV_PREFIXES)
    }


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Endpoints:
    def __init__(self, workspace: Workspace, python: str = sys.executable) -> None:
        self.workspace = workspace
        self.python = python

    # -- files

    def _dir(self, name: str) -> Path:
        if not safe_name(name):
            raise NotFoundError(f"no endpoint named {name!r}")
        return self.workspace.endpoint_dir(name)

    def _lock(self, name: str) -> Any:
        return file_lock(self.workspace.locks / f"endpoint-{name}.lock")

    def _pid_file(self, name: str) -> Path:
        return self.workspace.pid_file("endpoint", name)

    def read_state(self, name: str) -> dict[str, Any] | None:
        return read_json(self._dir(name) / serving.STATE_FILE)

    def _write_state(self, name: str, state: dict[str, Any]) -> None:
        write_json_atomic(self._dir(name) / serving.STATE_FILE, state)

    def _alive(self, name: str) -> bool:
        record = processes.read_pid_file(self._pid_file(name))
        return record is not None and processes.is_alive(record)

    def url(self, state: dict[str, Any], path: str = "/score") -> str:
        return f"http://127.0.0.1:{state['port']}{path}"

    # -- create

    def begin_deploy(self, request: DeployRequest, model_source: Path) -> None:
        """Create the endpoint and start its server; a retry for the same run is a no-op."""
        name = request.endpoint_name
        directory = self._dir(name)
        self.workspace.ensure()
        with self._lock(name):
            state = self.read_state(name)
            if state is not None and request.join_endpoint:
                self._add_deployment(state, request, model_source)
                return
            if state is not None:
                tags = state.get("tags") or {}
                if tags.get(TAG_RUN_ID) != request.tags.get(TAG_RUN_ID):
                    raise PlatformError(
                        f"endpoint {name} already exists for another run; pick another endpoint name",
                        code="Conflict",
                    )
                log.info("endpoint %s: already created for run %s", name, tags.get(TAG_RUN_ID))
                return
            if request.join_endpoint:
                raise NotFoundError(f"no endpoint named {name!r} to add deployment {request.deployment_name} to")
            directory.mkdir(parents=True, exist_ok=True)
            self._write_keys(directory)
            port = processes.free_port()
            first = _deployment_spec(request, model_source)
            # The endpoint's own fields, then the first deployment's spec repeated at the top level, where
            # readers of state.json from before several deployments per endpoint look for it.
            state = {
                "name": name,
                "deployment_name": request.deployment_name,
                "description": request.description,
                **first,
                "instance_count": request.instance_count,
                "port": port,
                "pid": None,
                "state": CREATING,
                "error_code": None,
                "error_message": None,
                "traffic": {},
                "deployments": {request.deployment_name: copy.deepcopy(first)},
            }
            self._write_state(name, state)
            self._spawn(name, directory, state)
            log.info("endpoint %s: server starting on port %s (pid %s)", name, port, state["pid"])

    def _add_deployment(self, state: dict[str, Any], request: DeployRequest, model_source: Path) -> None:
        """One more deployment on a running endpoint (a canary), at 0% traffic; the server loads it. Under
        the lock."""
        name = request.endpoint_name
        if not is_managed(state.get("tags")):
            raise NotManagedError(f"endpoint {name} is not managed by the app; it is left alone")
        deployments = dict(deployments_of(state))
        existing = deployments.get(request.deployment_name)
        if existing is not None:
            if (existing.get("tags") or {}).get(TAG_RUN_ID) != request.tags.get(TAG_RUN_ID):
                raise PlatformError(
                    f"endpoint {name} already has a deployment {request.deployment_name} of another run",
                    code="Conflict",
                )
            return  # a retry
        if len(deployments) >= MAX_DEPLOYMENTS_PER_ENDPOINT:
            raise PlatformError(
                f"endpoint {name} has {len(deployments)} deployments; at most {MAX_DEPLOYMENTS_PER_ENDPOINT}",
                code="QuotaExceeded",
            )
        deployments[request.deployment_name] = _deployment_spec(request, model_source)
        state["deployments"] = deployments
        self._write_state(name, state)
        log.info("endpoint %s: deployment %s added", name, request.deployment_name)

    def _spawn(self, name: str, directory: Path, state: dict[str, Any]) -> None:
        """Start the endpoint's server process from its state directory; records the pid. Under the lock."""
        proc = processes.start_detached(
            [self.python, "-m", "local.platform.serving.server", "--state-dir", str(directory)],
            log_path=directory / LOG_FILE,
            pid_path=self._pid_file(name),
            name=f"endpoint {name}",
            cwd=directory,
            env=server_env(),  # an allow-listed environment: no webhook key, no connection string
        )
        state["pid"] = proc.pid
        self._write_state(name, state)

    # -- restart (a restarted host, a crashed or stalled server)

    def _restart_locked(self, name: str, state: dict[str, Any], reason: str, *, force: bool = False) -> bool:
        """Start the server of a deployed endpoint again: the same port when it is free, the same keys
        (keys.json stays). Under the lock. False when the last restart was under RESTART_BACKOFF_S ago."""
        last = state.get("restarted_at")
        since_last = None
        if isinstance(last, str):
            since_last = (datetime.now(UTC) - datetime.fromisoformat(last)).total_seconds()
        if not force and since_last is not None and since_last < RESTART_BACKOFF_S:
            return False
        self._stop(name)  # a stalled process, or a stale pid file
        # A killed multi-threaded server is reported dead (its leader a zombie) a moment before its last thread
        # exits and its socket closes: give the old port that moment before moving to a new one.
        deadline = time.monotonic() + PORT_RELEASE_WAIT_S
        while processes.port_in_use(int(state["port"])) and time.monotonic() < deadline:
            time.sleep(0.1)
        if processes.port_in_use(int(state["port"])):
            old = state["port"]
            state["port"] = processes.free_port()
            log.warning("endpoint %s: port %s is taken; the server moves to %s", name, old, state["port"])
        state["restarts"] = int(state.get("restarts") or 0) + 1
        state["restarted_at"] = _now()
        state["last_restart_reason"] = reason
        state["failed_probes"] = 0
        state["answering"] = False
        state.pop("first_failed_probe_at", None)
        state.pop("process_exited", None)
        self._spawn(name, self._dir(name), state)
        log.warning("endpoint %s: restarted (%s); pid %s, port %s", name, reason, state["pid"], state["port"])
        return True

    def revive_all(self) -> list[str]:
        """Restart the server of every deployed endpoint whose process is not running (``autopilot up``
        after ``down``, or a reboot). Returns the names restarted."""
        revived: list[str] = []
        root = self.workspace.endpoints
        for directory in sorted(root.iterdir()) if root.is_dir() else []:
            if not directory.is_dir() or not safe_name(directory.name):
                continue
            name = directory.name
            with self._lock(name):
                state = self.read_state(name)
                if state is None or not is_managed(state.get("tags")) or state.get("state") != SUCCEEDED:
                    continue
                if self._alive(name):
                    continue
                if self._restart_locked(name, state, "the platform was restarted", force=True):
                    revived.append(name)
        return revived

    def _note_probe(self, name: str, answered: bool) -> None:
        """Count probes a live server did not answer at all (a 503 while the model loads is an answer), once it
        has answered since its start; once UNRESPONSIVE_PROBES in a row span RESTART_BACKOFF_S, the server is
        taken as stalled and restarted."""
        with self._lock(name):
            state = self.read_state(name)
            if state is None or state.get("state") != SUCCEEDED:
                return
            before = int(state.get("failed_probes") or 0)
            if answered:
                if before or not state.get("answering"):
                    state["answering"] = True
                    state["failed_probes"] = 0
                    state.pop("first_failed_probe_at", None)
                    self._write_state(name, state)
                return
            if not state.get("answering"):
                return  # still starting (importing, binding its port) since its last start: not stalled
            state["failed_probes"] = before + 1
            first = state.setdefault("first_failed_probe_at", _now())
            stalled_s = (datetime.now(UTC) - datetime.fromisoformat(first)).total_seconds()
            if state["failed_probes"] >= UNRESPONSIVE_PROBES and stalled_s >= RESTART_BACKOFF_S:
                state.pop("first_failed_probe_at", None)
                if self._restart_locked(name, state, f"no answer to {state['failed_probes']} health probes in a row"):
                    return
            self._write_state(name, state)

    @staticmethod
    def _write_keys(directory: Path) -> None:
        path = directory / serving.KEYS_FILE
        if path.exists():
            return
        # O_EXCL + 0600 from the first byte: the keys are never readable by anyone else, even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            import json

            json.dump({"primary": secrets.token_urlsafe(32), "secondary": secrets.token_urlsafe(32)}, handle)

    def keys(self, name: str) -> tuple[str, str]:
        """(primary, secondary) for ``autopilot endpoints --show-keys`` and ``invoke``."""
        keys = serving.Keys.load(self._dir(name) / serving.KEYS_FILE)
        return keys.primary, keys.secondary

    # -- inspect

    def _probe(self, state: dict[str, Any]) -> int | None:
        import httpx

        try:
            return httpx.get(self.url(state, "/health"), timeout=PROBE_TIMEOUT_S).status_code
        except httpx.HTTPError:
            return None

    def _failure(self, name: str, directory: Path) -> tuple[str, str]:
        status = read_json(directory / serving.SERVER_STATUS_FILE) or {}
        if status.get("state") == FAILED:
            return str(status.get("code") or "ResourceNotReady"), str(status.get("message") or "the server failed")
        tail = processes.log_tail(directory / LOG_FILE, lines=5).strip()
        reason = "the endpoint's server process exited"
        return "ResourceNotReady", reason + (f"; log tail: {tail[-1500:]}" if tail else "")

    def refresh(self, name: str) -> dict[str, Any] | None:
        """The endpoint's state after one look at its process: Creating -> Succeeded | Failed."""
        directory = self._dir(name)
        with self._lock(name):
            state = self.read_state(name)
            if state is None:
                return None
            alive = self._alive(name)
            current = state.get("state")
            if current == CREATING:
                if not alive and self._restart_creating(name, directory, state):
                    return state
                if not alive:
                    state["error_code"], state["error_message"] = self._failure(name, directory)
                    state["state"] = FAILED
                    self._stop(name)
                    self._write_state(name, state)
                    log.warning("endpoint %s: failed: %s", name, state["error_code"])
                elif self._probe(state) == 200:
                    state["state"] = SUCCEEDED
                    state["answering"] = True
                    state["ready_at"] = _now()
                    self._write_state(name, state)
                    log.info("endpoint %s: ready", name)
            elif (
                current == SUCCEEDED
                and not alive
                # Like a managed endpoint's container restart; only when that is backing off is it "exited".
                and not self._restart_locked(name, state, "the server process exited")
            ):
                state["process_exited"] = True
            return state

    def _restart_creating(self, name: str, directory: Path, state: dict[str, Any]) -> bool:
        """A server gone while loading that did not report its own failure (a model that cannot load does):
        start it again, at most CREATE_RESTARTS times. Under the lock."""
        reported = (read_json(directory / serving.SERVER_STATUS_FILE) or {}).get("state") == FAILED
        tries = int(state.get("create_restarts") or 0)
        if reported or tries >= CREATE_RESTARTS:
            return False
        state["create_restarts"] = tries + 1
        return self._restart_locked(name, state, "the server exited while loading", force=True)

    def get_deployment(self, endpoint_name: str, deployment_name: str) -> DeploymentInfo:
        state = self.refresh(endpoint_name)
        if state is None or deployment_name not in deployments_of(state):
            return DeploymentInfo(endpoint_name, deployment_name, DeploymentState.MISSING)
        return self._deployment_info(endpoint_name, deployment_name, state)

    def _deployment_info(self, endpoint_name: str, deployment_name: str, state: dict[str, Any]) -> DeploymentInfo:
        current = DeploymentState(state.get("state", CREATING))
        if current == DeploymentState.SUCCEEDED:
            # The process answers; each deployment's own model may still load, or have failed to.
            status = read_json(self._dir(endpoint_name) / serving.SERVER_STATUS_FILE) or {}
            own = (status.get("deployments") or {}).get(deployment_name)
            if own is None and isinstance(status.get("deployments"), dict):
                current = DeploymentState.CREATING  # added; the server has not picked it up yet
            elif own is not None and own.get("state") == "Failed":
                return DeploymentInfo(
                    endpoint_name,
                    deployment_name,
                    DeploymentState.FAILED,
                    str(own.get("code") or "ModelLoadFailed"),
                    str(own.get("message") or "the model could not be loaded"),
                    self.url(state),
                )
            elif own is not None and own.get("state") != "Ready":
                current = DeploymentState.CREATING
        if current == DeploymentState.SUCCEEDED and state.get("process_exited"):
            return DeploymentInfo(
                endpoint_name,
                deployment_name,
                DeploymentState.FAILED,
                "ResourceNotReady",
                "the endpoint's server process is not running",
                self.url(state),
            )
        return DeploymentInfo(
            endpoint_name,
            deployment_name,
            current,
            state.get("error_code"),
            state.get("error_message"),
            self.url(state),
        )

    def set_traffic(self, name: str, traffic: dict[str, int]) -> None:
        with self._lock(name):
            state = self.read_state(name)
            if state is None:
                raise NotFoundError(f"no endpoint named {name!r}")
            unknown = [d for d in traffic if d not in deployments_of(state)]
            if unknown:
                raise NotFoundError(f"endpoint {name} has no deployment {', '.join(unknown)}")
            if sum(traffic.values()) not in (0, 100):
                raise PlatformError(
                    f"traffic must add up to 100 (or 0), not {sum(traffic.values())}", code="BadArgument"
                )
            state["traffic"] = {d: int(v) for d, v in traffic.items() if v}
            self._write_state(name, state)

    def list_deployments(self, name: str) -> list[DeploymentSummary]:
        state = self.refresh(name)
        if state is None:
            raise NotFoundError(f"no endpoint named {name!r}")
        traffic = state.get("traffic") or {}
        return [
            DeploymentSummary(
                deployment,
                (spec.get("tags") or {}).get(TAG_RUN_ID),
                self._deployment_info(name, deployment, state).state,
                int(traffic.get(deployment) or 0),
            )
            for deployment, spec in deployments_of(state).items()
        ]

    def deployment_metrics(self, name: str, since: datetime) -> dict[str, DeploymentMetrics]:
        directory = self._dir(name)
        if not directory.is_dir():
            raise NotFoundError(f"no endpoint named {name!r}")
        counts = metrics_since(read_json(directory / DEPLOYMENT_STATS_FILE), since)
        return {deployment: DeploymentMetrics(n, e) for deployment, (n, e) in counts.items()}

    def delete_deployment(self, name: str, deployment: str) -> None:
        """Remove one deployment (the server unloads it); missing is success, traffic on it is refused."""
        with self._lock(name):
            state = self.read_state(name)
            if state is None:
                return
            if not is_managed(state.get("tags")):
                raise NotManagedError(f"endpoint {name} is not managed by the app; it is left alone")
            deployments = dict(deployments_of(state))
            if deployment not in deployments:
                return
            if int((state.get("traffic") or {}).get(deployment) or 0) > 0:
                raise PlatformError(
                    f"deployment {deployment} of endpoint {name} carries traffic; move it first",
                    code="DeploymentHasTraffic",
                )
            del deployments[deployment]
            state["deployments"] = deployments
            self._write_state(name, state)
            log.info("endpoint %s: deployment %s deleted", name, deployment)

    def list(self) -> list[EndpointInfo]:
        out: list[EndpointInfo] = []
        root = self.workspace.endpoints
        for directory in sorted(root.iterdir()) if root.is_dir() else []:
            if not directory.is_dir() or not safe_name(directory.name):
                continue
            state = read_json(directory / serving.STATE_FILE)
            if state is None or not is_managed(state.get("tags")):
                continue
            state = self.refresh(directory.name) or state
            healthy: bool | None
            if state.get("state") == FAILED or not self._alive(directory.name):
                healthy = False
            elif state.get("state") == CREATING:
                healthy = None  # still loading: neither healthy nor known to be broken
            else:
                code = self._probe(state)
                healthy = code == 200
                self._note_probe(directory.name, answered=code is not None)
            created = state.get("created_at")
            out.append(
                EndpointInfo(
                    name=directory.name,
                    tags=dict(state.get("tags") or {}),
                    created_at=datetime.fromisoformat(created) if isinstance(created, str) else None,
                    scoring_uri=self.url(state),
                    state=str(state.get("state")),
                    healthy=healthy,
                )
            )
        return out

    def activity(self, name: str, since: datetime) -> EndpointActivity:
        directory = self._dir(name)
        if not directory.is_dir():
            raise NotFoundError(f"no endpoint named {name!r}")
        last, count = serving.activity_since(read_json(directory / serving.STATS_FILE), since)
        return EndpointActivity(last_request_at=last, request_count=count)

    # -- use

    def invoke(self, name: str, deployment_name: str | None, payload: dict[str, Any]) -> Any:
        import httpx

        state = self.refresh(name)
        if state is None:
            raise NotFoundError(f"no endpoint named {name!r}")
        deployments = deployments_of(state)
        if deployment_name is not None and deployment_name not in deployments:
            raise NotFoundError(f"endpoint {name} has no deployment {deployment_name!r}")
        primary, _ = self.keys(name)
        longest = max((int(d.get("request_timeout_ms") or 90_000) for d in deployments.values()), default=90_000)
        headers = {"Authorization": f"Bearer {primary}"}
        if deployment_name is not None:  # as Azure ML: a named deployment, else the endpoint's traffic split
            headers[DEPLOYMENT_HEADER] = deployment_name
        try:
            response = httpx.post(self.url(state), json=payload, headers=headers, timeout=longest / 1000 + 10)
        except httpx.HTTPError as exc:
            raise TransientPlatformError(f"endpoint {name} did not answer: {type(exc).__name__}") from None
        if response.status_code >= 400:
            reason = _error_message(response)
            error = TransientPlatformError if response.status_code in (408, 429, 503) else PlatformError
            raise error(
                f"endpoint {name} answered HTTP {response.status_code}: {reason}",
                code=str(response.status_code),
            )
        return response.json()

    # -- delete

    def _stop(self, name: str) -> None:
        processes.stop_pid_file(self._pid_file(name), timeout_s=5.0)

    def delete(self, name: str) -> None:
        """Stop the server and remove everything the endpoint had; a missing endpoint is success."""
        directory = self._dir(name)
        with self._lock(name):
            state = self.read_state(name)
            if state is None and not directory.exists():
                self._stop(name)
                return
            if state is not None and not is_managed(state.get("tags")):
                raise NotManagedError(f"endpoint {name} is not managed by the app; it is left alone")
            self._stop(name)
            shutil.rmtree(directory, ignore_errors=True)
            log.info("endpoint %s: deleted", name)


def _deployment_spec(request: DeployRequest, model_source: Path) -> dict[str, Any]:
    """What the server needs to serve one deployment, as ``state.json`` lists it."""
    return {
        "model": {
            "name": request.model.name,
            "version": request.model.version,
            "id": request.model.id,
            "source": str(model_source),
        },
        "instance_type": request.instance_type,
        "device": "cuda" if request.instance_type.lower() == "local-cuda" else "cpu",
        "request_timeout_ms": request.request_timeout_ms,
        "max_concurrent_requests": request.max_concurrent_requests,
        "tags": dict(request.tags),
        "created_at": _now(),
    }


def _error_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return str(response.text)[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    return str(body)[:300]
