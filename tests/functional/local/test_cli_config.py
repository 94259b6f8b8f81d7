"""``autopilot validate`` on files it has never seen, and ``status`` / ``--follow`` over a ledger."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from local.cli.commands_config import follow
from local.cli.main import main
from shared import runtime
from shared.states import RunState
from tests.configs import config_bytes
from tests.fakes import FakeClock, make_store

ROOT = Path(__file__).resolve().parents[3]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "local.cli.main", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_validate_exit_codes_and_one_line_per_error(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_bytes(config_bytes())
    bad = tmp_path / "bad.json"  # JSON content, checked field by field
    bad.write_text(json.dumps({"model": {"name": "x"}, "compute": {"cluster": "serverless"}, "extra": 1}))
    ok = run_cli("validate", str(good))
    assert ok.returncode == 0 and ok.stdout.strip() == f"{good}: valid"
    failed = run_cli("validate", str(bad))
    assert failed.returncode == 1 and "Traceback" not in failed.stdout + failed.stderr
    lines = failed.stdout.strip().splitlines()
    assert sorted(lines) == sorted(
        [
            "data: required field is missing",
            "compute.instance_type: required when cluster is `serverless` (e.g. Standard_NC24ads_A100_v4)",
            "extra: unknown key (check the spelling; see schemas/training-config.schema.json)",
        ]
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x00\x01\xff", "(file): file is not UTF-8 text"),
        (b"a: &x [1]\nb: *x\n", "(file): invalid YAML at line 2 column 4: YAML aliases"),
        (None, "(file): no such file"),
        (b"dataset_label: 2024-13-45\n", "dataset_label: cannot read '2024-13-45' as timestamp"),
        (b"training: {epochs: " + b"9" * 5000 + b"}\n", "training.epochs: cannot read"),
    ],
)
def test_validate_never_shows_a_traceback(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "config.yaml"
    if content is not None:
        path.write_bytes(content)
    result = run_cli("validate", str(path))
    assert result.returncode == 1 and result.stdout.startswith(expected) and not result.stderr


def test_follow_prints_states_in_the_order_they_happened(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    store, _, _ = make_store(clock)
    monkeypatch.setattr(runtime, "run_store", lambda: store)
    store.create(
        "demo-1234abcd", config_blob="demo.yaml", config_name="demo", content=b"x", config_etag=None, platform="fake"
    )
    for state in (
        RunState.SUBMITTED,
        RunState.RUNNING,
        RunState.COMPLETED,
        RunState.REGISTERED,
        RunState.DEPLOYING,
        RunState.DEPLOYED,
    ):
        clock.advance(seconds=1)
        store.advance("demo-1234abcd", state)
    out = io.StringIO()
    assert follow("demo-1234abcd", out=out) == 0
    states = [line.split(": ")[-1] for line in out.getvalue().splitlines()]
    assert states == ["received", "submitted", "running", "completed", "registered", "deploying", "deployed"]

    clock.advance(seconds=1)
    store.advance("demo-1234abcd", RunState.DELETED)
    later = io.StringIO()
    assert follow("demo-1234abcd", out=later, until=frozenset({RunState.DELETED}), since=clock.now) == 0
    assert [line.split(": ")[-1] for line in later.getvalue().splitlines()] == ["deleted"]


def test_status_lists_and_details_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    store, _, _ = make_store()
    monkeypatch.setattr(runtime, "run_store", lambda: store)
    assert main(["status"]) == 0
    assert "no runs yet" in capsys.readouterr().out
    store.create(
        "demo-1234abcd", config_blob="demo.yaml", config_name="demo", content=b"x", config_etag=None, platform="fake"
    )
    store.advance(
        "demo-1234abcd", RunState.REJECTED, lambda r: r.errors.append({"path": "training.seed", "message": "bad"})
    )
    assert main(["status"]) == 0
    assert "demo-1234abcd" in capsys.readouterr().out
    assert main(["status", "demo"]) == 0  # by config name
    detail = capsys.readouterr().out
    assert "state: rejected" in detail and "error: training.seed: bad" in detail
    assert main(["status", "demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["errors"] == [{"path": "training.seed", "message": "bad"}]
    assert main(["status", "nope"]) == 1
