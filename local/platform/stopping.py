"""Stopping a job process on SIGTERM without cutting a write to the shared MLflow store in half.

The job process turns SIGTERM into ``JobCanceledError`` raised in its main thread, so training stops at once
wherever it is. Raised in the middle of an MLflow call, though, it can leave that call's SQLite connection
holding the store's write lock: the recipe's own "mark the run failed" on the way out then waits on that lock
for the whole busy timeout, and the process outlives the stopper's grace period and is killed (ending Failed,
not Canceled). So code that writes to the store runs inside ``deferred_cancel()``: a SIGTERM arriving there
is noted and raised as soon as the block ends. A process still winding down a while after SIGTERM is ended
by ``watch_wind_down``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

# Set by the SIGTERM handler: the job was stopped, even where the interrupted code raised something else.
CANCEL_REQUESTED = threading.Event()

_deferring = 0  # depth of deferred_cancel() blocks in the main thread (the only thread signals reach)


class JobCanceledError(BaseException):
    """SIGTERM arrived. A BaseException, so ``except Exception`` inside the recipe does not swallow it."""


def request_cancel() -> None:
    """What the SIGTERM handler does: note the request, and raise now unless a write is in progress."""
    CANCEL_REQUESTED.set()
    if _deferring == 0:
        raise JobCanceledError()


@contextlib.contextmanager
def deferred_cancel() -> Iterator[None]:
    """Run the block to its end even if SIGTERM arrives meanwhile; raise the cancel after it."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    # Reached only when the block ended normally: an exception already on its way out is not replaced.
    if _deferring == 0 and CANCEL_REQUESTED.is_set():
        raise JobCanceledError()


def watch_wind_down(grace_s: float, *, ending: threading.Event, on_stuck: Callable[[], None]) -> None:
    """Called on SIGTERM: should the process not have wound down within ``grace_s`` (a write blocked on the
    MLflow store's lock, a long native call), run ``on_stuck`` (record the end, tell the app) and exit. If the
    main thread is already reporting the end (``ending``), it gets half that time more, then the process exits."""

    def watchdog() -> None:
        time.sleep(grace_s)
        if ending.is_set():
            time.sleep(grace_s / 2)
            os._exit(1)
        on_stuck()
        logging.shutdown()
        os._exit(1)

    threading.Thread(target=watchdog, name="cancel-watchdog", daemon=True).start()
