"""Read the functions and their triggers from a ``FunctionApp``: the app's own metadata, no second list.

``FunctionApp.get_functions()`` builds the functions and refuses to run twice on one app object, so the
result is kept per app and every host built on that app shares it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local.common.exceptions import HostConfigError

log = logging.getLogger(__name__)

BLOB_TRIGGER = "blobTrigger"
EVENT_GRID_TRIGGER = "eventGridTrigger"
TIMER_TRIGGER = "timerTrigger"
QUEUE_TRIGGER = "queueTrigger"


@dataclass(frozen=True)
class FunctionSpec:
    """One function of the app: its name, its trigger binding (as ``function.json`` has it) and its code."""

    name: str
    trigger_type: str
    binding: dict[str, Any]
    user_function: Callable[..., Any]
    # Bindings the local host does not provide; the function is still invoked and fails if it needs them.
    extra_bindings: tuple[str, ...] = ()

    @property
    def arg_name(self) -> str:
        """The parameter the trigger object is passed as (``arg_name`` of the decorator)."""
        return str(self.binding.get("name") or "")


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation: ``error`` is the exception's type and message when it raised."""

    function: str
    trigger: str
    target: str
    succeeded: bool
    duration_s: float
    error: str | None = None


@dataclass
class Functions:
    """The app's functions by trigger type."""

    blob: list[FunctionSpec] = field(default_factory=list)
    event_grid: dict[str, FunctionSpec] = field(default_factory=dict)
    timer: dict[str, FunctionSpec] = field(default_factory=dict)
    queue: dict[str, FunctionSpec] = field(default_factory=dict)

    def all(self) -> list[FunctionSpec]:
        return [*self.blob, *self.event_grid.values(), *self.timer.values(), *self.queue.values()]


_CACHE: weakref.WeakKeyDictionary[Any, Functions] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _binding_dict(binding: Any) -> dict[str, Any]:
    raw = binding.get_dict_repr()
    # Enum values (direction) become their names so the dict reads like function.json.
    return {k: (v.name.lower() if hasattr(v, "name") and k == "direction" else v) for k, v in raw.items()}


def discover(app: Any) -> Functions:
    """The functions of ``app`` (any ``azure.functions.FunctionApp``), grouped by trigger type."""
    with _CACHE_LOCK:
        cached = _CACHE.get(app)
        if cached is not None:
            return cached
        found = Functions()
        try:
            indexed = app.get_functions()
        except ValueError as exc:
            raise HostConfigError(
                f"could not read the app's functions ({exc}). get_functions() runs once per FunctionApp: "
                "build the host before anything else calls it, or build a fresh FunctionApp for the host"
            ) from None
        for fn in indexed:
            name = fn.get_function_name()
            trigger = fn.get_trigger()
            if trigger is None:
                log.warning("function %s has no trigger; the local host skips it", name)
                continue
            binding = _binding_dict(trigger)
            trigger_type = str(binding.get("type"))
            extra = tuple(str(b.get_dict_repr().get("type")) for b in fn.get_bindings() if b is not trigger)
            spec = FunctionSpec(name, trigger_type, binding, fn.get_user_function(), extra)
            if extra:
                log.warning("function %s has bindings the local host does not provide: %s", name, ", ".join(extra))
            if trigger_type == BLOB_TRIGGER:
                found.blob.append(spec)
            elif trigger_type == EVENT_GRID_TRIGGER:
                found.event_grid[name] = spec
            elif trigger_type == TIMER_TRIGGER:
                found.timer[name] = spec
            elif trigger_type == QUEUE_TRIGGER:
                found.queue[name] = spec
            else:
                log.warning("function %s: trigger type %s is not served by the local host", name, trigger_type)
        _CACHE[app] = found
        return found


def invoke(spec: FunctionSpec, trigger_object: Any, target: str) -> Invocation:
    """Call the user function with the trigger object, log one line with the outcome, never raise.

    Runs in the caller's thread; an ``async def`` function gets its own event loop there.
    """
    started = time.monotonic()
    error: str | None = None
    try:
        result = spec.user_function(**{spec.arg_name: trigger_object})
        if inspect.isawaitable(result):
            asyncio.run(_await(result))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.exception("function %s (%s %r) failed", spec.name, spec.trigger_type, target)
    duration = time.monotonic() - started
    outcome = Invocation(spec.name, spec.trigger_type, target, error is None, duration, error)
    log.info(
        "function %s (%s %r): %s in %.2fs",
        spec.name,
        spec.trigger_type,
        target,
        "Succeeded" if outcome.succeeded else "Failed",
        duration,
    )
    return outcome


async def _await(awaitable: Any) -> Any:
    return await awaitable
