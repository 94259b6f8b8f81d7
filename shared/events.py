"""Typed wrappers over Azure ML's Event Grid events.

Wrapped once at the boundary; handlers never index raw dicts. Azure's documentation shows PascalCase data
keys (``RunTags``) and the SDK's test payloads camelCase (``runTags``): both are read. The raw event stays
available as ``raw``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shared.exceptions import AutopilotError
from shared.naming import TAG_RUN_ID, is_managed, is_run_id

RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
MODEL_DEPLOYED = "Microsoft.MachineLearningServices.ModelDeployed"
SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
PIPELINE_RUN_TYPE = "azureml.PipelineRun"


class EventError(AutopilotError):
    """The event lacks a field the app needs or has the wrong shape; retrying cannot fix it."""


def _pick(data: dict[str, Any], camel: str) -> Any:
    """Read ``camel`` or its PascalCase twin."""
    if camel in data:
        return data[camel]
    return data.get(camel[:1].upper() + camel[1:])


def _text(data: dict[str, Any], camel: str, *, required: bool = True) -> str | None:
    value = _pick(data, camel)
    if value is None or value == "":
        if required:
            raise EventError(f"event data has no {camel!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EventError(f"event data {camel!r} must be text, not {type(value).__name__}")
    return str(value)


def _dict(data: dict[str, Any], camel: str) -> dict[str, str]:
    value = _pick(data, camel)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"event data {camel!r} must be an object, not {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items()}


@dataclass(frozen=True)
class AzureMLEvent:
    """Envelope fields shared by every Azure ML event."""

    id: str
    topic: str
    subject: str
    event_type: str
    data: dict[str, Any]
    raw: dict[str, Any]

    @property
    def short_type(self) -> str:
        """``RunCompleted`` for ``Microsoft.MachineLearningServices.RunCompleted``."""
        return self.event_type.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class RunEvent(AzureMLEvent):
    """RunCompleted (success only) or RunStatusChanged (any status)."""

    @property
    def run_id(self) -> str:
        """``runId``: the job name for a pipeline job."""
        return _text(self.data, "runId") or ""

    @property
    def experiment_name(self) -> str | None:
        """``experimentName``."""
        return _text(self.data, "experimentName", required=False)

    @property
    def experiment_id(self) -> str | None:
        """``experimentId``."""
        return _text(self.data, "experimentId", required=False)

    @property
    def run_type(self) -> str | None:
        """``runType``: ``azureml.PipelineRun`` for the pipeline; child steps carry other types."""
        return _text(self.data, "runType", required=False)

    @property
    def run_tags(self) -> dict[str, str]:
        """``runTags``: where the app's ``autopilot_*`` tags travel."""
        return _dict(self.data, "runTags")

    @property
    def run_properties(self) -> dict[str, str]:
        """``runProperties``."""
        return _dict(self.data, "runProperties")

    @property
    def run_status(self) -> str:
        """``runStatus``; RunCompleted carries none and means ``Completed``."""
        if self.event_type == RUN_COMPLETED:
            return _text(self.data, "runStatus", required=False) or "Completed"
        return _text(self.data, "runStatus") or ""

    @property
    def is_child_run(self) -> bool:
        """A step of a pipeline rather than the pipeline itself."""
        if self.run_type and self.run_type != PIPELINE_RUN_TYPE:
            return True
        props = self.run_properties
        return bool(props.get("azureml.pipelinerunid") or props.get("azureml.parentrunid"))


@dataclass(frozen=True)
class ModelRegisteredEvent(AzureMLEvent):
    @property
    def model_name(self) -> str:
        """``modelName``."""
        return _text(self.data, "modelName") or ""

    @property
    def model_version(self) -> str:
        """``modelVersion``: documented as an int, seen as a string; always text here."""
        return _text(self.data, "modelVersion") or ""

    @property
    def model_tags(self) -> dict[str, str]:
        """``modelTags``."""
        return _dict(self.data, "modelTags")

    @property
    def model_properties(self) -> dict[str, str]:
        """``modelProperties``."""
        return _dict(self.data, "modelProperties")


def _no_nan(raw: dict[str, Any]) -> None:
    """JSON has no NaN or Infinity (RFC 8259, section 6); Python's json reads them, Event Grid never sends them:
    an event carrying one is malformed, wherever it is."""
    stack: list[tuple[Any, str]] = [(raw, "event")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise EventError(f"{where} is {value}, which is not a JSON number")
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}") for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))


def _envelope_text(raw: dict[str, Any], name: str, event_type: str) -> str:
    """An optional envelope field that must be text when present (``topic``, ``subject``)."""
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EventError(f"{event_type} event {name} must be text, not {type(value).__name__}")
    return value


_WRAPPERS: dict[str, type[AzureMLEvent]] = {
    RUN_COMPLETED: RunEvent,
    RUN_STATUS_CHANGED: RunEvent,
    MODEL_REGISTERED: ModelRegisteredEvent,
}


def parse_event(raw: dict[str, Any]) -> AzureMLEvent:
    """Wrap one Event Grid event (schema: id, topic, subject, eventType, data). Validates required fields."""
    if not isinstance(raw, dict):
        raise EventError("an event must be a JSON object")
    _no_nan(raw)
    event_type = raw.get("eventType") or raw.get("event_type") or raw.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise EventError("event has no eventType")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise EventError(f"{event_type} event has no data object")
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise EventError(f"{event_type} event has no id")
    wrapper = _WRAPPERS.get(event_type, AzureMLEvent)
    event = wrapper(
        id=event_id,
        topic=_envelope_text(raw, "topic", event_type),
        subject=_envelope_text(raw, "subject", event_type),
        event_type=event_type,
        data=data,
        raw=raw,
    )
    # Touch the required fields now so a malformed event fails here, at the boundary.
    tags: dict[str, str] = {}
    if isinstance(event, RunEvent):
        _ = event.run_id, event.run_status
        tags = event.run_tags
    elif isinstance(event, ModelRegisteredEvent):
        _ = event.model_name, event.model_version
        tags = event.model_tags
    if is_managed(tags) and not is_run_id(tags[TAG_RUN_ID]):
        shown = tags[TAG_RUN_ID][:80]
        raise EventError(f"tag {TAG_RUN_ID} {shown!r} is not a run id (letters, digits, '.', '_', '-')")
    return event


def from_function_event(event: Any) -> AzureMLEvent:
    """Wrap an ``azure.functions.EventGridEvent``."""
    return parse_event(
        {
            "id": event.id,
            "topic": event.topic,
            "subject": event.subject,
            "eventType": event.event_type,
            "data": event.get_json(),
        }
    )


def topic_matches(event: AzureMLEvent, expected_topic: str) -> bool:
    """True when no topic is configured, or the event's topic is the configured workspace (case-insensitive)."""
    return not expected_topic or event.topic.rstrip("/").lower() == expected_topic.rstrip("/").lower()
