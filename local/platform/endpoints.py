"""Local online endpoints: one server process per endpoint on 127.0.0.1, serving its deployments behind one URL.

The pieces: the endpoint's files and their types (``serving/state.py``), read and written under the
endpoint's lock (``endpointstore.py``); its deployments and traffic (``endpointdeployments.py``); its server
process, started, watched and restarted (``endpointservers.py``); the HTTP client that probes and invokes it
(``endpointclient.py``). Deleting stops the process group and removes the whole directory, keys included.
"""

from __future__ import annotations

import logging
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from local.common.processes import free_port
from local.platform import endpointclient, endpointdeployments
from local.platform.endpointservers import EndpointServers
from local.platform.endpointstore import EndpointStore
from local.platform.serving.deployments import metrics_since
from local.platform.serving.serving import activity_since
from local.platform.serving.state import EndpointState
from local.platform.workspace import Workspace
from shared.exceptions import NotFoundError, PlatformError
from shared.naming import TAG_RUN_ID, is_managed
from shared.platform.port import (
    DeploymentInfo,
    DeploymentMetrics,
    DeploymentState,
    DeploymentSummary,
    DeployRequest,
    EndpointActivity,
    EndpointInfo,
)

log = logging.getLogger(__name__)


class Endpoints:
    def __init__(self, workspace: Workspace, python: str = sys.executable) -> None:
        self.workspace = workspace
        self.store = EndpointStore(workspace)
        self.servers = EndpointServers(self.store, python)

    def read_state(self, name: str) -> EndpointState | None:
        """The state; None when there is none, NotManagedError for a ``state.json`` this app did not write."""
        return self.store.read(name)

    def keys(self, name: str) -> tuple[str, str]:
        """(primary, secondary) for ``autopilot endpoints --show-keys`` and ``invoke``."""
        keys = self.store.keys(name)
        return keys.primary, keys.secondary

    def revive_all(self) -> list[str]:
        """Start the server of every deployed endpoint again whose process is not running (``autopilot up``)."""
        return self.servers.revive_all()

    # -- create

    def begin_deploy(self, request: DeployRequest, model_source: Path) -> None:
        """Create the endpoint and start its server, or add the deployment to the endpoint it joins; a retry
        for the same run is a no-op."""
        name = request.endpoint_name
        directory = self.store.dir(name)
        self.workspace.ensure()
        with self.store.lock(name):
            state = self.read_state(name)
            if state is not None and request.join_endpoint:
                if endpointdeployments.add_deployment(state, request, model_source):
                    self.store.write(state)
                    log.info("endpoint %s: deployment %s added", name, request.deployment_name)
                return
            if state is not None:
                endpointdeployments.require_managed(state)  # someone else's endpoint: NotManagedError, untouched
                if state.tags.get(TAG_RUN_ID) != request.tags.get(TAG_RUN_ID):
                    raise PlatformError(
                        f"endpoint {name} already exists for another run; pick another endpoint name",
                        code="Conflict",
                    )
                log.info("endpoint %s: already created for run %s", name, state.tags.get(TAG_RUN_ID))
                return
            if request.join_endpoint:
                raise NotFoundError(f"no endpoint named {name!r} to add deployment {request.deployment_name} to")
            directory.mkdir(parents=True, exist_ok=True)
            self.store.write_keys(name)
            first = endpointdeployments.deployment_spec(request, model_source)
            state = EndpointState(
                name=name,
                description=request.description,
                tags=dict(request.tags),
                created_at=first.created_at,
                instance_count=request.instance_count,
                port=free_port(),
                state=DeploymentState.CREATING,
                deployments={request.deployment_name: first},
            )
            self.store.write(state)
            self.servers.spawn(state)
            log.info("endpoint %s: server starting on port %s (pid %s)", name, state.port, state.pid)

    # -- deployments

    def get_deployment(self, endpoint_name: str, deployment_name: str) -> DeploymentInfo:
        state = self.servers.refresh(endpoint_name)
        if state is None or deployment_name not in state.deployments:
            return DeploymentInfo(endpoint_name, deployment_name, DeploymentState.MISSING)
        status = self.store.server_status(endpoint_name)
        return endpointdeployments.deployment_info(state, status, deployment_name)

    def set_traffic(self, name: str, traffic: dict[str, int]) -> None:
        with self.store.lock(name):
            state = self.store.read(name)
            if state is None:
                raise NotFoundError(f"no endpoint named {name!r}")
            endpointdeployments.set_traffic(state, traffic)
            self.store.write(state)

    def list_deployments(self, name: str) -> list[DeploymentSummary]:
        state = self.servers.refresh(name)
        if state is None:
            raise NotFoundError(f"no endpoint named {name!r}")
        return endpointdeployments.summaries(state, self.store.server_status(name))

    def deployment_metrics(self, name: str, since: datetime) -> dict[str, DeploymentMetrics]:
        counts = metrics_since(self.store.deployment_counts(name), since)
        return {deployment: DeploymentMetrics(n, e) for deployment, (n, e) in counts.items()}

    def delete_deployment(self, name: str, deployment: str) -> None:
        """Remove one deployment (the server unloads it); missing is success, traffic on it is refused."""
        with self.store.lock(name):
            state = self.read_state(name)
            if state is not None and endpointdeployments.remove_deployment(state, deployment):
                self.store.write(state)
                log.info("endpoint %s: deployment %s deleted", name, deployment)

    # -- inspect and use

    def list(self) -> list[EndpointInfo]:
        """The app's endpoints, each looked at once (a probe of a serving one counts towards a stall)."""
        out: list[EndpointInfo] = []
        for name in self.store.names():
            state = self.store.read_managed(name)
            if state is None or not is_managed(state.tags):
                continue
            state = self.servers.refresh(name) or state
            out.append(
                EndpointInfo(
                    name=name,
                    tags=dict(state.tags),
                    created_at=state.created_at,
                    scoring_uri=state.url(),
                    state=state.state.value,
                    healthy=self._healthy(state),
                )
            )
        return out

    def _healthy(self, state: EndpointState) -> bool | None:
        if state.state == DeploymentState.FAILED or not self.servers.alive(state.name):
            return False
        if state.state == DeploymentState.CREATING:
            return None  # still loading: neither healthy nor known to be broken
        code = endpointclient.probe(state)
        self.servers.note_probe(state.name, answered=code is not None)
        return code == 200

    def activity(self, name: str, since: datetime) -> EndpointActivity:
        last, count = activity_since(self.store.request_counts(name), since)
        return EndpointActivity(last_request_at=last, request_count=count)

    def invoke(self, name: str, deployment_name: str | None, payload: dict[str, Any]) -> Any:
        state = self.servers.refresh(name)
        if state is None:
            raise NotFoundError(f"no endpoint named {name!r}")
        if deployment_name is not None and deployment_name not in state.deployments:
            raise NotFoundError(f"endpoint {name} has no deployment {deployment_name!r}")
        return endpointclient.invoke(state, self.store.keys(name).primary, deployment_name, payload)

    # -- delete

    def delete(self, name: str) -> None:
        """Stop the server and remove everything the endpoint had; a missing endpoint is success."""
        directory = self.store.dir(name)
        with self.store.lock(name):
            state = self.read_state(name)
            if state is not None:
                endpointdeployments.require_managed(state)
            self.servers.stop(name)
            if directory.exists():
                shutil.rmtree(directory, ignore_errors=True)
                log.info("endpoint %s: deleted", name)
