"""Event Grid triggers: job events start registration; model registrations start deployment."""

from __future__ import annotations

import logging
from typing import TypeVar

import azure.functions as func

from shared import runtime, telemetry
from shared.events import AzureMLEvent, EventError, ModelRegisteredEvent, RunEvent, from_function_event
from shared.naming import TAG_CONFIG, TAG_RUN_ID
from shared.subscriptions import DEPLOY_FUNCTION, REGISTER_FUNCTION

log = logging.getLogger(__name__)
bp = func.Blueprint()

E = TypeVar("E", bound=AzureMLEvent)


def _wrap(event: func.EventGridEvent, wanted: type[E]) -> E | None:
    """The typed event, or None (logged) for a malformed event or one this function does not handle.

    Neither is raised: Event Grid would retry, and retrying cannot fix the event.
    """
    try:
        wrapped = from_function_event(event)
    except EventError as exc:
        log.warning("event %s dropped: %s", event.id, exc)
        return None
    if not isinstance(wrapped, wanted):
        log.info("event %s: %s is not handled here; ignored", wrapped.id, wrapped.event_type)
        return None
    # The run the event is about, as its tags name it (a step of the pipeline carries its job's tags too).
    tags: dict[str, str] = {}
    if isinstance(wrapped, RunEvent):
        tags = wrapped.run_tags
    elif isinstance(wrapped, ModelRegisteredEvent):
        tags = wrapped.model_tags
    telemetry.bind(run_id=tags.get(TAG_RUN_ID), config=tags.get(TAG_CONFIG))
    return wrapped


@bp.function_name(REGISTER_FUNCTION)
@bp.event_grid_trigger(arg_name="event")
def register(event: func.EventGridEvent) -> None:
    with telemetry.invocation(REGISTER_FUNCTION):
        _register(event)


def _register(event: func.EventGridEvent) -> None:
    wrapped = _wrap(event, RunEvent)
    if wrapped is None:
        return
    from shared.services.lifecycle import on_run_event  # services (and pydantic models) load on first use

    outcome = on_run_event(runtime.run_store(), runtime.platform(), wrapped, runtime.settings().workspace_topic)
    log.info("event %s: %s", wrapped.id, outcome)


@bp.function_name(DEPLOY_FUNCTION)
@bp.event_grid_trigger(arg_name="event")
def deploy(event: func.EventGridEvent) -> None:
    with telemetry.invocation(DEPLOY_FUNCTION):
        _deploy(event)


def _deploy(event: func.EventGridEvent) -> None:
    wrapped = _wrap(event, ModelRegisteredEvent)
    if wrapped is None:
        return
    from shared.services.lifecycle import on_model_registered

    outcome = on_model_registered(runtime.run_store(), runtime.platform(), wrapped, runtime.settings().workspace_topic)
    log.info("event %s: %s", wrapped.id, outcome)
