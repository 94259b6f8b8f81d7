"""Where telemetry goes, each in a process of its own (the SDK's providers are set once per process): the local
twin's JSON lines under the work dir, and the Function App's Azure Monitor distro."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import logging, sys
from pathlib import Path
from shared import telemetry
from shared.telemetry_setup import configure_local
logging.getLogger().setLevel(logging.INFO)
print(configure_local(Path(sys.argv[1]), {}))
with telemetry.invocation("submit", config="team/phi3.yaml"):
    with telemetry.run_scope(run_id="team-phi3-1234abcd", job="team-phi3-1234abcd"):
        logging.getLogger("shared.runs").info("run team-phi3-1234abcd: state submitted")
"""


def test_the_local_host_writes_spans_and_logs_with_the_run_names(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(tmp_path / "telemetry")
    spans = [json.loads(line) for line in (tmp_path / "telemetry" / "spans.jsonl").read_text().splitlines()]
    logs = [json.loads(line) for line in (tmp_path / "telemetry" / "logs.jsonl").read_text().splitlines()]
    assert {s["name"] for s in spans} == {"autopilot.submit", "autopilot.run"}
    (run_span,) = [s for s in spans if s["name"] == "autopilot.run"]
    assert run_span["attributes"]["autopilot.run_id"] == "team-phi3-1234abcd"
    assert run_span["attributes"]["autopilot.function"] == "submit"
    (record,) = [r for r in logs if r["body"].endswith("state submitted")]
    assert record["attributes"]["autopilot.run_id"] == "team-phi3-1234abcd"
    assert record["attributes"]["autopilot.job"] == "team-phi3-1234abcd"
    assert record["attributes"]["autopilot.config"] == "team/phi3.yaml"


FUNCTION_APP = """
import logging, os
from opentelemetry import trace
from shared.telemetry_setup import configure_function_app
print(configure_function_app({
    "APPLICATIONINSIGHTS_CONNECTION_STRING":
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=11111111-1111-1111-1111-111111111111;Authorization=AAD",
}))
print(" ".join(type(p).__name__ for p in trace.get_tracer_provider()._active_span_processor._span_processors))
print(" ".join(type(h).__name__ for h in logging.getLogger().handlers))
os._exit(0)  # nothing to flush to: the ingestion endpoint is a closed port
"""


def test_the_function_app_configures_the_azure_monitor_distro_with_the_run_attributes() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FUNCTION_APP], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    where, processors, handlers = out.stdout.strip().splitlines()
    assert where == "azure-monitor"
    assert "RunAttributesSpanProcessor" in processors.split() and "BatchSpanProcessor" in processors.split()
    assert "LoggingHandler" in handlers.split()


def test_the_authentication_string_names_the_identity() -> None:
    from azure.identity import ManagedIdentityCredential

    from shared.telemetry_setup import _credential

    aad = {"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=abc;Authorization=AAD"}
    assert isinstance(_credential(aad), ManagedIdentityCredential)
    assert _credential({}) is None
    assert _credential({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=Key"}) is None
