"""Event Grid triggers: job events start registration; model registrations start deployment."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import runtime
from shared.events import EventError, ModelRegisteredEvent, RunEvent, from_function_event

log = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.function_name("register")
@bp.event_grid_trigger(arg_name="event")
def register(event: func.EventGridEvent) -> None:
    try:
        wrapped = from_function_event(event)
    except EventError as exc:
        # Retrying a malformed event cannot help: log it and let it go.
        log.warning("event %s dropped: %s", event.id, exc)
        return
    if not isinstance(wrapped, RunEvent):
        log.info("event %s: %s is not a run event; ignored", wrapped.id, wrapped.event_type)
        return
    from shared.services.lifecycle import on_run_event  # services (and pydantic models) load on first use

    s = runtime.settings()
    log.info(
        "event %s: %s",
        wrapped.id,
        on_run_event(runtime.run_store(), runtime.platform(), wrapped, s.workspace_topic),
    )


@bp.function_name("deploy")
@bp.event_grid_trigger(arg_name="event")
def deploy(event: func.EventGridEvent) -> None:
    try:
        wrapped = from_function_event(event)
    except EventError as exc:
        log.warning("event %s dropped: %s", event.id, exc)
        return
    if not isinstance(wrapped, ModelRegisteredEvent):
        log.info("event %s: %s is not a model registration; ignored", wrapped.id, wrapped.event_type)
        return
    from shared.services.lifecycle import on_model_registered

    s = runtime.settings()
    outcome = on_model_registered(runtime.run_store(), runtime.platform(), wrapped, s.workspace_topic)
    log.info("event %s: %s", wrapped.id, outcome)
