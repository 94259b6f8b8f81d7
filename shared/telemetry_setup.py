"""Where the app's telemetry goes: Azure Monitor in the Function App, files (or OTLP) on the local twin.

- In the Function App (``configure_function_app``, called when ``function_app`` is imported): the Azure Monitor
  OpenTelemetry distro, as "Use OpenTelemetry with Azure Functions" sets it up for Python
  (https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto?pivots=programming-language-python):
  ``host.json`` has ``"telemetryMode": "OpenTelemetry"``, the app setting ``PYTHON_ENABLE_OPENTELEMETRY=true``
  lets the worker stream its logs itself, and the code calls ``configure_azure_monitor()``. It is called here
  with the identity's credential because the Application Insights resource refuses keys (``disableLocalAuth``;
  ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` names the identity).
- On the local twin (``configure_local``, called by the local host): spans and log records as JSON lines in
  ``<AUTOPILOT_WORKDIR>/telemetry/spans.jsonl`` and ``logs.jsonl``, or OTLP to ``OTEL_EXPORTER_OTLP_ENDPOINT``
  when that is set and the OTLP exporter package is installed.
Both put the run's attributes on every span and log record (``shared/telemetry.py``).
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from opentelemetry import trace

from shared.telemetry import install_log_attributes

log = logging.getLogger(__name__)

SERVICE_NAME = "fine-tune-autopilot"
# The distro's instrumentations this app has no use for (it serves no web framework, uses no database):
# turned off, so a cold start does not import them.
UNUSED_INSTRUMENTATIONS = ("django", "fastapi", "flask", "psycopg2")


_with_run_attributes: set[int] = set()  # the SDK providers our span processor was added to


def _add_run_attributes(provider: Any) -> bool:
    """Add the run-attribute span processor to an SDK tracer provider (once); False for the API's no-op one."""
    if not hasattr(provider, "add_span_processor"):
        return False
    from shared.telemetry_spans import RunAttributesSpanProcessor  # the SDK loads where a provider exists

    if id(provider) not in _with_run_attributes:
        provider.add_span_processor(RunAttributesSpanProcessor())
        _with_run_attributes.add(id(provider))
    return True


def _credential(env: Mapping[str, str]) -> Any:
    """The identity the authentication string names (``ClientId=<id>;Authorization=AAD``), or None for a key."""
    parts = dict(
        p.split("=", 1) for p in env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "").split(";") if "=" in p
    )
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    from azure.identity import ManagedIdentityCredential

    client_id = parts.get("ClientId") or env.get("AZURE_CLIENT_ID") or None
    return ManagedIdentityCredential(client_id=client_id)


def configure_function_app(env: Mapping[str, str] | None = None) -> str:
    """Telemetry for the Function App; returns where it goes ("configured" when a provider was already set up,
    as the local host does before it loads the app; "azure-monitor"; or "none" without a connection string)."""
    env = os.environ if env is None else env
    install_log_attributes()
    if _add_run_attributes(trace.get_tracer_provider()):
        return "configured"
    if not env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return "none"
    from azure.monitor.opentelemetry import configure_azure_monitor

    from shared.telemetry_spans import RunAttributesSpanProcessor

    options: dict[str, Any] = {
        "connection_string": env["APPLICATIONINSIGHTS_CONNECTION_STRING"],
        "span_processors": [RunAttributesSpanProcessor()],
        "instrumentation_options": {name: {"enabled": False} for name in UNUSED_INSTRUMENTATIONS},
    }
    credential = _credential(env)
    if credential is not None:
        options["credential"] = credential
    configure_azure_monitor(**options)
    _with_run_attributes.add(id(trace.get_tracer_provider()))
    return "azure-monitor"


def _jsonl(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = path.open("a", encoding="utf-8", buffering=1)  # line-buffered: a reader sees whole lines
    atexit.register(stream.close)
    return stream


def configure_local(workdir: Path, env: Mapping[str, str] | None = None) -> str:
    """Telemetry for the local twin's processes; returns where it goes (the OTLP endpoint or the folder)."""
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    env = os.environ if env is None else env
    install_log_attributes()
    if _add_run_attributes(trace.get_tracer_provider()):
        return "configured"
    resource = Resource.create({"service.name": SERVICE_NAME, "deployment.environment": "local"})
    tracer_provider = TracerProvider(resource=resource)
    logger_provider = LoggerProvider(resource=resource)
    where = ""
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp-proto-http is not installed; "
                "telemetry goes to files under %s instead",
                workdir / "telemetry",
            )
        else:
            tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
            where = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    if not where:
        folder = workdir / "telemetry"
        spans = ConsoleSpanExporter(
            out=_jsonl(folder / "spans.jsonl"), formatter=lambda s: s.to_json(indent=None) + "\n"
        )
        logs = ConsoleLogRecordExporter(
            out=_jsonl(folder / "logs.jsonl"), formatter=lambda r: r.to_json(indent=None) + "\n"
        )
        tracer_provider.add_span_processor(BatchSpanProcessor(spans))
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(logs))
        where = str(folder)
    _add_run_attributes(tracer_provider)
    trace.set_tracer_provider(tracer_provider)
    set_logger_provider(logger_provider)
    logging.getLogger().addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
    atexit.register(logger_provider.shutdown)
    atexit.register(tracer_provider.shutdown)
    return where
