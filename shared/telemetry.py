"""Which run a span or a log record belongs to: one set of attribute names, one place that sets them.

Everything the app does for a run happens inside ``run_scope(record)`` (every guarded step, every sweep's look
at a run, every state change, every submit and event delivery): the scope holds the run's attributes
(``ATTRIBUTES``: run id, config path, job, model, endpoint) in a context variable, and

- every span started while it holds, the app's and the Azure SDK's, gets them (``RunAttributesSpanProcessor``
  of ``shared/telemetry_spans.py``);
- every log record made while it holds gets them (the log record factory ``install_log_attributes`` sets), so
  the OpenTelemetry logging handler exports them as the record's attributes (``customDimensions`` in
  Application Insights) and the local files show them;
- each state change is a span event, ``STATE_CHANGE_EVENT``, carrying the run's attributes, the state left and
  entered and the error code, and each endpoint cleanup deleted a ``CLEANUP_EVENT`` with what it saves.

Only the OpenTelemetry API is imported here (no SDK, no exporter): where nothing configured a provider every span
is a no-op. ``shared/telemetry_setup.py`` configures the providers (Azure Monitor on Azure, files or OTLP on
the local twin). docs/observability.md queries these names; tests/functional/shared/test_telemetry.py checks
that the queries use only names the code sets.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from shared.states import RunState

if TYPE_CHECKING:
    from shared.ledger.record import RunRecord

TRACER_NAME = "autopilot"

# The run's names, on every span and log record of the run.
RUN_ID = "autopilot.run_id"
CONFIG = "autopilot.config"
JOB = "autopilot.job"
MODEL = "autopilot.model"
MODEL_VERSION = "autopilot.model_version"
ENDPOINT = "autopilot.endpoint"
DEPLOYMENT = "autopilot.deployment"
ATTRIBUTES = (RUN_ID, CONFIG, JOB, MODEL, MODEL_VERSION, ENDPOINT, DEPLOYMENT)
FUNCTION = "autopilot.function"  # on the span of each function invocation

# A state change (a span event, a row of the traces table on Azure).
STATE_CHANGE_EVENT = "autopilot.state_change"
STATE = "autopilot.state"
STATE_FROM = "autopilot.state_from"
ERROR_CODE = "autopilot.error_code"
ERROR = "autopilot.error"

# An endpoint the cleanup deleted, and what deleting it saves (per day, at the price table's hourly price).
CLEANUP_EVENT = "autopilot.cleanup"
CLEANUP_ACTION = "autopilot.cleanup.action"
CLEANUP_REASON = "autopilot.cleanup.reason"
CLEANUP_INSTANCE_TYPE = "autopilot.cleanup.instance_type"
CLEANUP_INSTANCES = "autopilot.cleanup.instances"
CLEANUP_USD_PER_DAY = "autopilot.cleanup.usd_per_day"

ERROR_CHARS = 500  # of the first error's message, on a state change event
FAILED_STATES = frozenset({RunState.FAILED, RunState.DEPLOY_FAILED, RunState.REJECTED})  # those that carry it

_scope: ContextVar[Mapping[str, str]] = ContextVar("autopilot_run_scope", default=MappingProxyType({}))
_tracer_provider: trace.TracerProvider | None = None


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Spans of the app go to ``provider`` (tests' in-memory exporter) instead of the global one; None: global."""
    global _tracer_provider
    _tracer_provider = provider


def tracer() -> trace.Tracer:
    provider = _tracer_provider or trace.get_tracer_provider()
    return provider.get_tracer(TRACER_NAME)


def run_attributes(record: RunRecord | None = None, **names: str | None) -> dict[str, str]:
    """The run's attributes from its record and/or names given as ``run_id=``, ``config=``, ``job=``...; unset
    names are left out (a run in ``received`` has no job yet)."""
    found: dict[str, str | None] = {}
    if record is not None:
        found = {
            RUN_ID: record.run_id,
            CONFIG: record.config_blob,
            JOB: record.job_name,
            MODEL: record.model_name,
            MODEL_VERSION: record.model_version,
            ENDPOINT: record.endpoint_name,
            DEPLOYMENT: record.deployment_name,
        }
    for key, value in names.items():
        found[f"autopilot.{key}"] = value
    return {k: str(v) for k, v in found.items() if v}


def current_attributes() -> Mapping[str, str]:
    """The attributes of the run scope the caller is in (empty outside one)."""
    return _scope.get()


@contextlib.contextmanager
def run_scope(
    record: RunRecord | None = None, *, span: str | None = "autopilot.run", **names: str | None
) -> Iterator[None]:
    """Work for one run: its spans and log records carry its attributes until the block ends.

    Inside a scope of the same run, the names are added to that scope (and its span); otherwise (outside any
    run, or inside another run's scope, as a sweep that looks at many runs is) a span named ``span`` is started
    for this run, so no attribute of one run lands on a span of another. ``span=None``: no span, for a few
    log lines about one run among many."""
    attrs = run_attributes(record, **names)
    outer = _scope.get()
    same_run = RUN_ID in outer and attrs.get(RUN_ID, outer[RUN_ID]) == outer[RUN_ID]
    if same_run:
        merged = {**outer, **attrs}
        token = _scope.set(merged)
        current = trace.get_current_span()
        if current.is_recording():
            current.set_attributes(attrs)
        try:
            yield
        finally:
            _scope.reset(token)
        return
    # Another run's scope: its names are not this one's; anything else (the function) is kept. Outside any run
    # (an invocation that named only a config path), what the outer scope names is about this run.
    kept = {k: v for k, v in outer.items() if k not in ATTRIBUTES} if RUN_ID in outer else dict(outer)
    token = _scope.set({**kept, **attrs})
    try:
        if span is None:
            yield
            return
        with tracer().start_as_current_span(span):
            yield
    finally:
        _scope.reset(token)


@contextlib.contextmanager
def invocation(function: str, **names: str | None) -> Iterator[None]:
    """One function invocation (a trigger delivered): a span named after the function; ``names`` as in
    ``run_attributes`` when the trigger names a run."""
    token = _scope.set({FUNCTION: function, **run_attributes(None, **names)})
    try:
        with tracer().start_as_current_span(f"autopilot.{function}"):
            yield
    finally:
        _scope.reset(token)


def bind(record: RunRecord | None = None, **names: str | None) -> None:
    """Name the run a single-run invocation (a config dropped, an event delivered) is about: the invocation's
    span and everything after in it carry the run's attributes. Outside an invocation, or once it names another
    run, nothing changes (a sweep over many runs uses ``run_scope`` for each)."""
    attrs = run_attributes(record, **names)
    outer = _scope.get()
    if FUNCTION not in outer or (RUN_ID in outer and attrs.get(RUN_ID, outer[RUN_ID]) != outer[RUN_ID]):
        return
    _scope.set({**outer, **attrs})  # undone with the rest when the invocation's scope is reset
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(attrs)


def _event(name: str, attributes: Mapping[str, Any]) -> None:
    """A span event on the current span; a span of its own where none is recording (a CLI command)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.add_event(name, dict(attributes))
        return
    with tracer().start_as_current_span(name) as span:
        span.add_event(name, dict(attributes))


def state_changed(record: RunRecord, before: str | None) -> None:
    """The span event of a state change, with the run's names (for a query that reads events alone)."""
    attrs: dict[str, Any] = {**run_attributes(record), STATE: record.state.value}
    if before:
        attrs[STATE_FROM] = before
    if record.last_error_code and record.state in {*FAILED_STATES, RunState.DELETED}:
        attrs[ERROR_CODE] = record.last_error_code
    if record.errors and record.state in FAILED_STATES:
        first = record.errors[0]
        attrs[ERROR] = f"{first.path}: {first.message}"[:ERROR_CHARS]
    _event(STATE_CHANGE_EVENT, attrs)


def endpoint_cleaned(
    endpoint: str,
    action: str,
    reason: str,
    *,
    instance_type: str | None,
    instances: int | None,
    usd_per_day: float | None,
) -> None:
    """The span event of an endpoint the cleanup deleted (or would have, in a dry run)."""
    attrs: dict[str, Any] = {**current_attributes(), ENDPOINT: endpoint, CLEANUP_ACTION: action, CLEANUP_REASON: reason}
    attrs.pop(FUNCTION, None)
    if instance_type:
        attrs[CLEANUP_INSTANCE_TYPE] = instance_type
    if instances is not None:
        attrs[CLEANUP_INSTANCES] = instances
    if usd_per_day is not None:
        attrs[CLEANUP_USD_PER_DAY] = round(usd_per_day, 4)
    _event(CLEANUP_EVENT, attrs)


_factory_installed = False


def install_log_attributes() -> None:
    """Every log record made from now on carries the run scope's attributes (process-wide, once).

    A record factory rather than a handler's filter: it holds whatever handler the Functions worker, the Azure
    Monitor distro or the local host adds, before or after this call."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        attrs = _scope.get()
        if attrs:
            record.__dict__.update(attrs)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True
