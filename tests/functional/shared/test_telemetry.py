"""Traces and logs per run: the real function objects driven through two runs' whole lives (blob, submit, job
events, registration, deployment, cleanup's delete) with the in-process fakes, every span and log record
exported to the OpenTelemetry SDK's in-memory exporters and found by run id. The KQL of docs/observability.md
and of the infrastructure's alert and workbook is checked against the names those records carry."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.functions.blob import InputStream
from azure.functions.timer import TimerRequest
from opentelemetry._logs import LogRecord
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry
from shared.platform.port import JobStatus
from shared.settings import Settings
from shared.states import RunState
from shared.telemetry_spans import RunAttributesSpanProcessor
from tests.configs import config_bytes
from tests.eventdata import load_event
from tests.fakes import FakePlatform, make_store
from tests.functional.shared.test_functions import grid_event, user_function

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Exported:
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter

    def finished_spans(self) -> tuple[ReadableSpan, ...]:
        return self.spans.get_finished_spans()

    def finished_logs(self) -> tuple[LogRecord, ...]:
        return tuple(r.log_record for r in self.logs.get_finished_logs())


@pytest.fixture
def exported() -> Iterator[Exported]:
    """The SDK wired as the Function App wires it (run attributes on spans and log records), exporting to memory."""
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(RunAttributesSpanProcessor())
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    handler = LoggingHandler(level=logging.INFO, logger_provider=logger_provider)
    root = logging.getLogger()
    level = root.level
    telemetry.install_log_attributes()
    telemetry.use_tracer_provider(tracer_provider)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield Exported(spans, logs)
    root.removeHandler(handler)
    root.setLevel(level)
    telemetry.use_tracer_provider(None)


def drop(name: str) -> None:
    data = config_bytes()
    user_function("submit")(InputStream(data=data, name=f"training-configs/{name}", uri="u", length=len(data)))


def two_lives(use_runtime) -> tuple[Any, list[str]]:  # type: ignore[no-untyped-def]
    """Two runs from drop to deletion, their triggers interleaved, through the function objects."""
    store, _, _ = make_store()
    platform = FakePlatform(store.clock)  # type: ignore[arg-type]
    use_runtime(Settings.from_env({"AUTOPILOT_PLATFORM": "local"}), store=store, platform=platform)
    drop("team/phi3.yaml")
    drop("other/phi3-b.yaml")
    runs = [r.run_id for r in sorted(store.list(), key=lambda r: r.config_blob, reverse=True)]
    for run in runs:
        platform.finish_job(run)
        user_function("register")(grid_event(load_event("run_completed_pascal", RUN_ID=run)))
    for run in runs:
        r = store.get(run)
        raw = load_event("model_registered_camel", RUN_ID=run, MODEL_NAME=r.model_name, MODEL_VERSION=r.model_version)
        user_function("deploy")(grid_event(raw))
    platform.complete_deployments()
    user_function("reconcile")(TimerRequest(past_due=False))
    store.clock.advance(minutes=31)  # the config's idle_after_minutes is 30
    user_function("cleanup")(TimerRequest())
    assert [store.get(run).state for run in runs] == [RunState.DELETED, RunState.DELETED]
    return store, runs


def of_run(items: tuple[Any, ...], run: str) -> list[Any]:
    return [i for i in items if (i.attributes or {}).get(telemetry.RUN_ID) == run]


def test_every_span_and_log_record_of_a_run_carries_its_names(exported: Exported, use_runtime) -> None:  # type: ignore[no-untyped-def]
    store, runs = two_lives(use_runtime)
    spans, logs = exported.finished_spans(), exported.finished_logs()
    for run in runs:
        record = store.get(run)
        names = {
            telemetry.CONFIG: record.config_blob,
            telemetry.JOB: record.job_name,
            telemetry.MODEL: record.model_name,
            telemetry.ENDPOINT: record.endpoint_name,
        }
        run_spans, run_logs = of_run(spans, run), of_run(logs, run)
        assert run_spans and run_logs
        for item in [*run_spans, *run_logs]:
            attrs = dict(item.attributes or {})
            assert attrs[telemetry.CONFIG] == record.config_blob, attrs
            # Whatever else it names is this run's: nothing of the other run leaks in.
            for key, value in names.items():
                assert attrs.get(key, value) == value, (key, attrs)
        # Every function the run went through has spans and log records of it.
        functions = {str((s.attributes or {}).get(telemetry.FUNCTION)) for s in run_spans}
        assert functions == {"submit", "register", "deploy", "reconcile", "cleanup"}
        assert {str((r.attributes or {}).get(telemetry.FUNCTION)) for r in run_logs} == functions
        # The platform's names are on every span from the moment the run has them (submitted on).
        later = [s for s in run_spans if (s.attributes or {}).get(telemetry.FUNCTION) != "submit"]
        assert all(telemetry.JOB in (s.attributes or {}) for s in later)


def test_each_state_change_is_a_span_event_with_the_run_names(exported: Exported, use_runtime) -> None:  # type: ignore[no-untyped-def]
    store, runs = two_lives(use_runtime)
    spans = exported.finished_spans()
    for run in runs:
        record = store.get(run)
        events = sorted(
            (e for s in spans for e in s.events if e.name == telemetry.STATE_CHANGE_EVENT),
            key=lambda e: e.timestamp,
        )
        mine = [e for e in events if (e.attributes or {}).get(telemetry.RUN_ID) == run]
        assert [e.attributes[telemetry.STATE] for e in mine] == list(record.timeline)  # type: ignore[index]
        assert [e.attributes.get(telemetry.STATE_FROM) for e in mine] == [None, *list(record.timeline)[:-1]]  # type: ignore[union-attr]
        for event in mine[1:]:  # submitted on: the job, model and endpoint are named
            attrs = event.attributes or {}
            assert attrs[telemetry.JOB] == record.job_name and attrs[telemetry.ENDPOINT] == record.endpoint_name
            assert attrs[telemetry.MODEL] == record.model_name and attrs[telemetry.CONFIG] == record.config_blob
        (cleaned,) = [
            e
            for s in spans
            for e in s.events
            if e.name == telemetry.CLEANUP_EVENT and (e.attributes or {}).get(telemetry.RUN_ID) == run
        ]
        assert cleaned.attributes[telemetry.CLEANUP_ACTION] == "delete"  # type: ignore[index]
        assert cleaned.attributes[telemetry.ENDPOINT] == record.endpoint_name  # type: ignore[index]
        assert cleaned.attributes[telemetry.CLEANUP_USD_PER_DAY] > 0  # type: ignore[index,operator]
        assert cleaned.attributes[telemetry.CLEANUP_INSTANCE_TYPE] == record.inference_instance_type  # type: ignore[index]


def test_a_failed_run_tells_its_reason_on_the_event(exported: Exported, use_runtime) -> None:  # type: ignore[no-untyped-def]
    store, _, _ = make_store()
    platform = FakePlatform(store.clock)  # type: ignore[arg-type]
    use_runtime(Settings.from_env({"AUTOPILOT_PLATFORM": "local"}), store=store, platform=platform)
    drop("team/phi3.yaml")
    (record,) = store.list()
    platform.finish_job(record.run_id, status=JobStatus.FAILED, error="out of memory")
    raw = load_event("run_status_changed_camel", RUN_ID=record.run_id)
    raw["data"]["runStatus"] = "Failed"
    user_function("register")(grid_event(raw))
    failed = [
        e
        for s in exported.finished_spans()
        for e in s.events
        if e.name == telemetry.STATE_CHANGE_EVENT and (e.attributes or {}).get(telemetry.STATE) == "failed"
    ]
    (event,) = failed
    assert event.attributes[telemetry.ERROR_CODE] == "JobFailed"  # type: ignore[index]
    assert "out of memory" in str(event.attributes[telemetry.ERROR])  # type: ignore[index]


# -- the queries ------------------------------------------------------------------------------------------------
KQL_SOURCES = {
    "docs/observability.md": lambda text: re.findall(r"```kusto\n(.*?)```", text, flags=re.S),
    "infra/app/monitoring/failed-runs.kql": lambda text: [text],
    "infra/app/monitoring/workbook.json": lambda text: [
        item["content"]["query"]
        for item in json.loads(text)["items"]
        if item.get("type") == 3  # a query item
    ],
}


def queries() -> list[tuple[str, str]]:
    found = []
    for path, extract in KQL_SOURCES.items():
        found += [(path, q) for q in extract((ROOT / path).read_text())]
    return found


def test_the_queries_use_only_names_the_code_sets(exported: Exported, use_runtime) -> None:  # type: ignore[no-untyped-def]
    two_lives(use_runtime)
    spans, logs = exported.finished_spans(), exported.finished_logs()
    set_names = {k for s in spans for k in (s.attributes or {})}
    set_names |= {k for s in spans for e in s.events for k in (e.attributes or {})}
    set_names |= {k for r in logs for k in (r.attributes or {})}
    set_names |= {telemetry.ERROR_CODE, telemetry.ERROR}  # on failures only: the test above sees them set
    event_names = {e.name for s in spans for e in s.events}
    found = queries()
    assert {path for path, _ in found} == set(KQL_SOURCES), "every source holds at least one query"
    for path, query in found:
        used = set(re.findall(r'customDimensions\["([^"]+)"\]', query))
        assert used, f"{path}: a query that reads no attribute: {query}"
        assert used <= set_names, f"{path}: {sorted(used - set_names)} are set by no span or log record"
        messages = set(re.findall(r'message == "([^"]+)"', query))
        assert messages <= event_names, f"{path}: no event is named {sorted(messages - event_names)}"
        states = {
            s for group in re.findall(r"state\"?\]?\)? in \(([^)]*)\)", query) for s in re.findall(r'"(\w+)"', group)
        }
        assert states <= {s.value for s in RunState}, f"{path}: {sorted(states)} are not all run states"
