"""The local twin's telemetry: the same spans and log records, with the run's names, as JSON lines under the work
dir (a process of its own: the SDK's providers are set once per process)."""

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
