"""The span processor that puts a run scope's attributes (``shared/telemetry.py``) on every span started in it,
the Azure SDK's HTTP spans included. A module of its own: it needs the OpenTelemetry SDK, which the Function App
loads only where telemetry is configured (``shared/telemetry_setup.py``)."""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor

from shared.telemetry import current_attributes


class RunAttributesSpanProcessor(SpanProcessor):
    """Sets the run scope's attributes on each span as it starts."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attrs = current_attributes()
        if attrs:
            span.set_attributes(dict(attrs))
