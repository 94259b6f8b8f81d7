"""The Event Grid subscriptions of the app, and so the routing of events to functions, written once.

Each subscription on the workspace's system topic delivers some event types to one function, narrowed by
advanced filters. The Event Grid trigger functions take their names from here, the local ML platform posts
each event to the function named here, the deployment hook (``infra/hooks/azd_hooks.py postdeploy``) creates
exactly these subscriptions (``python -m shared.subscriptions`` prints them as ARM ``filter`` objects), and the tests
run real and local event payloads through an evaluator of Event Grid's filter rules against them.

Why these filters and no others:
- ``RunStatusChanged``: ``data.runTags.autopilot_managed`` StringIn ``true``. The documented event and the SDK
  payload captured from a real workspace both spell it ``runTags`` (tests/fixtures/eventgrid-real/), and the
  tag key has no '.', which a filter key could not address. There is no ``RunType`` filter: no public sample
  shows the ``runType`` of a v2 pipeline job (the documented events carry ``null``); the app drops child steps
  itself.
- ``RunCompleted``: event type only, in a subscription of its own. The documented event spells ``runTags``,
  but the payload captured from a real workspace (Azure/azure-sdk-for-net, ``ConsumeEventTests.cs``) spells
  ``RunTags`` beside camelCase keys, and Event Grid does not document whether data keys compare
  case-insensitively; a ``data.runTags`` filter could drop every success, the event the app most needs. The
  app's own checks (topic, tags, child steps: shared/services/lifecycle.py) drop other runs' events.
- Model events: event type only. The documented ``ModelRegistered`` spells its data PascalCase
  (``ModelTags``) and the SDK's captured payloads camelCase (``modelTags``); Event Grid does not document
  whether data keys compare case-insensitively, and advanced filters are ANDed, so no single tag filter is
  known to match both. A filter that might never match is the failure this module exists to avoid; model
  registrations are rare and the ``deploy`` function ignores models without the app's tags.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from shared.events import MODEL_REGISTERED, RUN_COMPLETED, RUN_STATUS_CHANGED
from shared.naming import TAG_MANAGED

REGISTER_FUNCTION = "register"
DEPLOY_FUNCTION = "deploy"


@dataclass(frozen=True)
class AdvancedFilter:
    """One Event Grid advanced filter: ``operator`` is its ``operatorType``, ``key`` a '.'-nested path."""

    operator: str
    key: str
    values: tuple[str, ...] = ()

    def to_arm(self) -> dict[str, Any]:
        document: dict[str, Any] = {"operatorType": self.operator, "key": self.key}
        if self.values:
            document["values"] = list(self.values)
        return document


@dataclass(frozen=True)
class Subscription:
    name: str  # the Event Grid subscription's name
    function: str  # the function it delivers to
    event_types: tuple[str, ...]
    advanced_filters: tuple[AdvancedFilter, ...] = ()

    def filter_arm(self) -> dict[str, Any]:
        """The subscription's ``properties.filter`` as ARM and the REST API take it."""
        return {
            "includedEventTypes": list(self.event_types),
            "advancedFilters": [f.to_arm() for f in self.advanced_filters],
        }


SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(
        "autopilot-run-events",
        REGISTER_FUNCTION,
        (RUN_STATUS_CHANGED,),
        (AdvancedFilter("StringIn", f"data.runTags.{TAG_MANAGED}", ("true",)),),
    ),
    Subscription("autopilot-run-completed", REGISTER_FUNCTION, (RUN_COMPLETED,)),
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


def arm_document() -> list[dict[str, Any]]:
    """Every subscription as ``{name, function, filter}``: what the deployment hook creates."""
    return [{"name": s.name, "function": s.function, "filter": s.filter_arm()} for s in SUBSCRIPTIONS]


def main() -> None:
    argparse.ArgumentParser(description="Print the app's Event Grid subscriptions as JSON (ARM filters).").parse_args()
    print(json.dumps(arm_document(), indent=2))


if __name__ == "__main__":
    main()
