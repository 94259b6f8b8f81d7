"""The Event Grid subscriptions of the app, and so the routing of events to functions, written once.

Each subscription on the workspace's system topic delivers some event types to one function. The Event Grid
trigger functions take their names from here, the local ML platform posts each event to the function named
here, and the infrastructure and the docs declare these subscriptions.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import MODEL_REGISTERED, RUN_COMPLETED, RUN_STATUS_CHANGED

REGISTER_FUNCTION = "register"
DEPLOY_FUNCTION = "deploy"


@dataclass(frozen=True)
class Subscription:
    name: str  # the Event Grid subscription's name
    function: str  # the function it delivers to
    event_types: tuple[str, ...]


SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription("autopilot-run-events", REGISTER_FUNCTION, (RUN_STATUS_CHANGED, RUN_COMPLETED)),
    Subscription("autopilot-model-events", DEPLOY_FUNCTION, (MODEL_REGISTERED,)),
)


class UnroutedEventError(LookupError):
    """No subscription of the app delivers this event type."""


def function_for(event_type: str) -> str:
    """The function a subscription delivers ``event_type`` to (event types compare case-insensitively)."""
    for subscription in SUBSCRIPTIONS:
        if event_type.lower() in (t.lower() for t in subscription.event_types):
            return subscription.function
    raise UnroutedEventError(f"no subscription of the app delivers {event_type!r}")
