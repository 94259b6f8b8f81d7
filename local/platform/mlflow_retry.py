"""MLflow calls against the workspace's SQLite store, retried while another process holds its write lock.

Every job process, the registry and the platform write to one ``mlflow.db``. SQLite lets one writer in at
a time; the others wait up to the connection's busy timeout (``Workspace.tracking_uri`` sets a long one)
and then fail with "database is locked". That is contention, not an error: retried here with backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCKED_MESSAGE = "database is locked"


def is_locked_error(exc: BaseException) -> bool:
    """SQLite's busy error, however MLflow or SQLAlchemy wrapped it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if LOCKED_MESSAGE in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_locked(
    call: Callable[[], T],
    *,
    attempts: int = 6,
    first_wait_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, tried again (waits 0.5, 1, 2, 4, 8 s) while it fails with "database is locked"."""
    wait = first_wait_s
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not is_locked_error(exc):
                raise
            log.warning("MLflow store busy (%s); retry %s of %s in %.1fs", LOCKED_MESSAGE, attempt, attempts - 1, wait)
            sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")  # the loop returns or raises


SCHEMA_LOCK = "mlflow-schema.lock"


def first_use(locks: Path, tracking_uri: str, call: Callable[[], T]) -> T:
    """A process's first call on the store, under a lock shared by every process of the workspace.

    MLflow creates and migrates the SQLite schema on a store's first use, and two processes doing so at once
    fail ("Online migration expected to match one row"): a job process starting while the host's reconcile
    lists models did. Under this lock the first one creates it, whole (``mlflow_store.create_once``: a
    process killed while creating it leaves no half-migrated store), and the others find it complete."""
    from local.common.statefiles import file_lock
    from local.platform.mlflow_store import create_once

    with file_lock(locks / SCHEMA_LOCK):
        create_once(tracking_uri)
        return retry_locked(call)
