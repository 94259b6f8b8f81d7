"""The platform's side of an endpoint's files: ``state.json`` read and written under the endpoint's lock, the
keys, the server's status and counters (the file types: ``serving/state.py``).

Every change to ``state.json`` is a read-modify-write under ``locks/endpoint-<name>.lock``, an ``flock``
shared by every process of the workspace (the host, the CLI, tests); each write replaces the file
atomically, so the endpoint's server, which only reads it, sees the old state or the new one.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

from local.common.statefiles import StateFileError, file_lock
from local.platform.serving.serving import Keys
from local.platform.serving.state import (
    DEPLOYMENT_STATS_FILE,
    KEYS_FILE,
    SERVER_STATUS_FILE,
    STATE_FILE,
    STATS_FILE,
    DeploymentCounts,
    EndpointState,
    RequestCounts,
    ServerStatus,
)
from local.platform.workspace import Workspace, safe_name
from shared.exceptions import NotFoundError, NotManagedError, PlatformError

log = logging.getLogger(__name__)

Counts = TypeVar("Counts", RequestCounts, DeploymentCounts)


class EndpointStore:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def dir(self, name: str) -> Path:
        if not safe_name(name):
            raise NotFoundError(f"no endpoint named {name!r}")
        return self.workspace.endpoint_dir(name)

    def lock(self, name: str) -> AbstractContextManager[None]:
        return file_lock(self.workspace.locks / f"endpoint-{name}.lock")

    def names(self) -> Iterator[str]:
        """Every endpoint directory's name, sorted."""
        root = self.workspace.endpoints
        for directory in sorted(root.iterdir()) if root.is_dir() else []:
            if directory.is_dir() and safe_name(directory.name):
                yield directory.name

    def read(self, name: str) -> EndpointState | None:
        """The state; None when there is none. A ``state.json`` this app did not write (another shape or schema
        version) is not the app's endpoint: NotManagedError, and it is never touched."""
        try:
            return EndpointState.load(self.dir(name) / STATE_FILE)
        except StateFileError as exc:
            raise NotManagedError(f"endpoint {name} is not managed by the app ({exc}); it is left alone") from None

    def read_managed(self, name: str) -> EndpointState | None:
        """The state, or None when there is none or it is not the app's."""
        try:
            return self.read(name)
        except NotManagedError as exc:
            log.warning("%s", exc)
            return None

    def write(self, state: EndpointState) -> None:
        state.save(self.dir(state.name) / STATE_FILE)

    def server_status(self, name: str) -> ServerStatus | None:
        try:
            return ServerStatus.load(self.dir(name) / SERVER_STATUS_FILE)
        except StateFileError as exc:
            log.warning("endpoint %s: %s", name, exc)
            return None

    def request_counts(self, name: str) -> RequestCounts | None:
        """The endpoint's request counters (the server writes them); None before its first request."""
        return self._counters(name, RequestCounts, STATS_FILE)

    def deployment_counts(self, name: str) -> DeploymentCounts | None:
        return self._counters(name, DeploymentCounts, DEPLOYMENT_STATS_FILE)

    def _counters(self, name: str, kind: type[Counts], file_name: str) -> Counts | None:
        directory = self.dir(name)
        if not directory.is_dir():
            raise NotFoundError(f"no endpoint named {name!r}")
        try:
            return kind.load(directory / file_name)
        except StateFileError as exc:  # not guessed at: whoever asks (the idle check) decides nothing on it
            raise PlatformError(f"endpoint {name}: {exc}", code="UnreadableEndpointState") from None

    def write_keys(self, name: str) -> None:
        """Two new keys, once: a retry keeps the ones written first."""
        path = self.dir(name) / KEYS_FILE
        if path.exists():
            return
        # O_EXCL + 0600 from the first byte: the keys are never readable by anyone else, even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"primary": secrets.token_urlsafe(32), "secondary": secrets.token_urlsafe(32)}, handle)

    def keys(self, name: str) -> Keys:
        return Keys.load(self.dir(name) / KEYS_FILE)
