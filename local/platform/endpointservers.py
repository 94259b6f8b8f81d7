"""The server process of each local endpoint: started, watched, and restarted as a managed endpoint restarts a
crashed or unresponsive container.

One process per endpoint (``python -m local.platform.serving.server --state-dir DIR``), supervised as
``endpoint-<name>`` (``supervisor.py``). An endpoint moves Creating -> Succeeded once its server answers its
health probe, or Failed when the server reports that it cannot serve. A server that exits while loading
without a failure of its own (killed, or stopped by ``autopilot down``) is started again ``CREATE_RESTARTS``
times; one that exits once serving is started again at most every ``RESTART_BACKOFF_S``; one that stops
answering ``UNRESPONSIVE_PROBES`` probes in a row over ``RESTART_BACKOFF_S`` is taken as stalled and restarted.
A restart keeps the keys and, when it is free, the port. Every method that changes the state runs under the
endpoint's lock.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime

from local.common import processes
from local.platform.endpointclient import probe
from local.platform.endpointstore import EndpointStore
from local.platform.serving.state import LOG_FILE, EndpointState
from local.platform.supervisor import Supervisor
from local.platform.workspace import child_env
from shared.naming import is_managed
from shared.platform.port import DeploymentState

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = 30.0
UNRESPONSIVE_PROBES = 3
CREATE_RESTARTS = 2
PORT_RELEASE_WAIT_S = 5.0
STOP_TIMEOUT_S = 5.0

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


def _seconds_since(moment: datetime) -> float:
    return (datetime.now(UTC) - moment).total_seconds()


class EndpointServers:
    def __init__(self, store: EndpointStore, python: str = sys.executable) -> None:
        self.store = store
        self.python = python
        self.supervisor = Supervisor(store.workspace, "endpoint")

    def alive(self, name: str) -> bool:
        return self.supervisor.alive(name)

    def stop(self, name: str) -> None:
        self.supervisor.stop(name, timeout_s=STOP_TIMEOUT_S)

    def spawn(self, state: EndpointState) -> None:
        """Start the endpoint's server from its directory and record its pid in the state (written)."""
        directory = self.store.dir(state.name)
        proc = self.supervisor.start(
            state.name,
            [self.python, "-m", "local.platform.serving.server", "--state-dir", str(directory)],
            log_path=directory / LOG_FILE,
            cwd=directory,
            env=server_env(),  # an allow-listed environment: no webhook key, no connection string
        )
        state.pid = proc.pid
        self.store.write(state)

    def restart(self, state: EndpointState, reason: str, *, force: bool = False) -> bool:
        """Start the server of a deployed endpoint again: the same port when it is free, the same keys
        (keys.json stays). False when the last restart was under RESTART_BACKOFF_S ago (unless ``force``)."""
        if not force and state.restarted_at is not None and _seconds_since(state.restarted_at) < RESTART_BACKOFF_S:
            return False
        self.stop(state.name)  # a stalled process, or a stale pid file
        # A killed multi-threaded server is reported dead (its leader a zombie) a moment before its last thread
        # exits and its socket closes: give the old port that moment before moving to a new one.
        deadline = time.monotonic() + PORT_RELEASE_WAIT_S
        while processes.port_in_use(state.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        if processes.port_in_use(state.port):
            old, state.port = state.port, processes.free_port()
            log.warning("endpoint %s: port %s is taken; the server moves to %s", state.name, old, state.port)
        state.restarts += 1
        state.restarted_at = datetime.now(UTC)
        state.last_restart_reason = reason
        state.failed_probes = 0
        state.answering = False
        state.first_failed_probe_at = None
        state.process_exited = False
        self.spawn(state)
        log.warning("endpoint %s: restarted (%s); pid %s, port %s", state.name, reason, state.pid, state.port)
        return True

    def refresh(self, name: str) -> EndpointState | None:
        """The endpoint's state after one look at its process: Creating -> Succeeded | Failed."""
        with self.store.lock(name):
            state = self.store.read(name)
            if state is None:
                return None
            alive = self.alive(name)
            if state.state == DeploymentState.CREATING:
                self._look_at_creating(state, alive)
            elif (
                state.state == DeploymentState.SUCCEEDED
                and not alive
                # Like a managed endpoint's container restart; only when that is backing off is it "exited".
                and not self.restart(state, "the server process exited")
            ):
                state.process_exited = True
            return state

    def _look_at_creating(self, state: EndpointState, alive: bool) -> None:
        if alive:
            if probe(state) == 200:
                state.state = DeploymentState.SUCCEEDED
                state.answering = True
                state.ready_at = datetime.now(UTC)
                self.store.write(state)
                log.info("endpoint %s: ready", state.name)
            return
        status = self.store.server_status(state.name)
        reported = status is not None and status.failed
        if not reported and state.create_restarts < CREATE_RESTARTS:
            # Gone while loading without reporting a failure of its own (a model that cannot load does).
            state.create_restarts += 1
            self.restart(state, "the server exited while loading", force=True)
            return
        if status is not None and status.failed:
            state.error_code = status.code or "ResourceNotReady"
            state.error_message = status.message or "the server failed"
        else:
            tail = processes.log_tail(self.store.dir(state.name) / LOG_FILE, lines=5).strip()
            state.error_code = "ResourceNotReady"
            state.error_message = "the endpoint's server process exited" + (
                f"; log tail: {tail[-1500:]}" if tail else ""
            )
        state.state = DeploymentState.FAILED
        self.stop(state.name)
        self.store.write(state)
        log.warning("endpoint %s: failed: %s", state.name, state.error_code)

    def note_probe(self, name: str, answered: bool) -> None:
        """Count probes a live server did not answer at all (a 503 while the model loads is an answer), once it
        has answered since its start; once UNRESPONSIVE_PROBES in a row span RESTART_BACKOFF_S, the server is
        taken as stalled and restarted."""
        with self.store.lock(name):
            state = self.store.read(name)
            if state is None or state.state != DeploymentState.SUCCEEDED:
                return
            if answered:
                if state.failed_probes or not state.answering:
                    state.answering = True
                    state.failed_probes = 0
                    state.first_failed_probe_at = None
                    self.store.write(state)
                return
            if not state.answering:
                return  # still starting (importing, binding its port) since its last start: not stalled
            state.failed_probes += 1
            if state.first_failed_probe_at is None:
                state.first_failed_probe_at = datetime.now(UTC)
            stalled_s = _seconds_since(state.first_failed_probe_at)
            if state.failed_probes >= UNRESPONSIVE_PROBES and stalled_s >= RESTART_BACKOFF_S:
                reason = f"no answer to {state.failed_probes} health probes in a row"
                state.first_failed_probe_at = None
                if self.restart(state, reason):
                    return
            self.store.write(state)

    def revive_all(self) -> list[str]:
        """Restart the server of every deployed endpoint whose process is not running (``autopilot up`` after
        ``down``, or a reboot). Returns the names restarted."""
        revived: list[str] = []
        for name in self.store.names():
            with self.store.lock(name):
                state = self.store.read_managed(name)
                if state is None or not is_managed(state.tags) or state.state != DeploymentState.SUCCEEDED:
                    continue
                if not self.alive(name) and self.restart(state, "the platform was restarted", force=True):
                    revived.append(name)
        return revived
