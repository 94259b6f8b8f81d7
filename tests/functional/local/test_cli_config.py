"""``autopilot validate`` on files it has never seen, and ``status`` / ``--follow`` over a ledger."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from autopilot.main import main
from autopilot.runs import follow
from shared.exceptions import FieldIssue
from shared.states import RunState
from tests.configs import config_bytes
from tests.fakes import FakeClock, FakePlatform, make_store

ROOT = Path(__file__).resolve().parents[3]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopilot.main", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
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
            "extra: unknown key (the keys here: name, experiment_name, model, data, compute, training, optimization,"
            " registration, deployment, cleanup, notify, component, dataset_label)",
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
    unreadable = 2 if content is None else 1  # a file named on the command line that is not there: usage
    assert result.returncode == unreadable and result.stdout.startswith(expected) and not result.stderr


def test_follow_prints_states_in_the_order_they_happened(use_runtime: Any) -> None:
    clock = FakeClock()
    store, _, _ = make_store(clock)
    use_runtime(store=store)
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


def test_status_lists_and_details_runs(use_runtime: Any, capsys: pytest.CaptureFixture[str]) -> None:
    store, _, _ = make_store()
    use_runtime(store=store)
    assert main(["status"]) == 0
    assert "no runs yet" in capsys.readouterr().out
    store.create(
        "demo-1234abcd", config_blob="demo.yaml", config_name="demo", content=b"x", config_etag=None, platform="fake"
    )
    store.advance("demo-1234abcd", RunState.REJECTED, lambda r: r.errors.append(FieldIssue("training.seed", "bad")))
    assert main(["status"]) == 0
    assert "demo-1234abcd" in capsys.readouterr().out
    assert main(["status", "demo"]) == 0  # by config name
    detail = capsys.readouterr().out
    assert "state: rejected" in detail and "error: training.seed: bad" in detail
    assert main(["status", "demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["errors"] == [{"path": "training.seed", "message": "bad"}]
    assert main(["status", "nope"]) == 1


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--message", "hi", "--max-new-tokens", "5000"], "max_new_tokens"),
        (["--message", "hi", "--temperature", "9"], "temperature"),
    ],
)
def test_invoke_checks_the_scoring_contract_before_sending(
    args: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["invoke", "no-such-endpoint", *args]) == 2  # a usage error, as argparse's
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err


def test_invoke_checks_a_request_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = tmp_path / "score.json"
    request.write_text(
        '{"input_data": {"input_string": [[{"role": "user", "content": "x"}]], "parameters": {"top_k": 2}}}'
    )
    assert main(["invoke", "no-such-endpoint", "--request-file", str(request)]) == 2
    assert "top_k" in capsys.readouterr().err


def test_status_pages_newest_first_with_all_and_state(use_runtime: Any, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    store, _, _ = make_store(clock)
    use_runtime(store=store)
    for i in range(5):
        store.create(
            f"cfg{i}-0000000{i}",
            config_blob=f"cfg{i}.yaml",
            config_name=f"cfg{i}",
            content=b"x",
            config_etag=None,
            platform="fake",
        )
        clock.advance(minutes=1)
    store.advance("cfg1-00000001", RunState.REJECTED)

    def listed(*args: str) -> list[str]:
        assert main(["status", *args]) == 0
        return [line.split()[0] for line in capsys.readouterr().out.splitlines() if not line.startswith("(")]

    assert listed("--limit", "2") == ["cfg4-00000004", "cfg3-00000003"]
    assert main(["status", "--limit", "2"]) == 0 and "--page 2" in capsys.readouterr().out
    assert listed("--limit", "2", "--page", "3") == ["cfg0-00000000"]
    assert listed("--all") == [f"cfg{i}-0000000{i}" for i in (4, 3, 2, 1, 0)]
    assert listed("--state", "rejected") == ["cfg1-00000001"]
    assert listed("--state", "received,rejected", "--limit", "1") == ["cfg4-00000004"]
    assert main(["status", "cfg2"]) == 0 and "cfg2-00000002" in capsys.readouterr().out  # by config name
    assert main(["status", "--state", "done"]) == 2
    assert "--state: done is not a run state" in capsys.readouterr().err


def test_status_shows_the_loss_curve_as_a_sparkline(use_runtime: Any, capsys: pytest.CaptureFixture[str]) -> None:
    store, _, _ = make_store()
    use_runtime(store=store)
    store.create("curve-1", config_blob="c.yaml", config_name="c", content=b"x", config_etag=None, platform="fake")
    curve = [{"step": 1.0, "loss": 3.0, "mean_token_accuracy": 0.2}, {"step": 2.0, "validation_loss": 2.9}]
    curve += [{"step": float(s), "loss": 3.0 - s / 10} for s in range(3, 11)]
    store.update("curve-1", lambda r: setattr(r, "history", curve))
    assert main(["status", "curve-1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    loss = next(line for line in lines if line.strip().startswith("loss:"))
    assert loss.split()[1] == "█▆▅▅▄▃▂▂▁" and "3.000 -> 2.000  (steps 1-10)" in loss
    assert any(line.strip().startswith("validation loss: ▄  2.900 -> 2.900") for line in lines)
    assert main(["status", "curve-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["history"] == curve


def test_status_plot_draws_the_curves_and_names_the_png(
    use_runtime: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store, _, _ = make_store()
    use_runtime(store=store)
    store.create("plot-1", config_blob="p.yaml", config_name="p", content=b"x", config_etag=None, platform="fake")
    png = tmp_path / "loss_curve.png"
    history = [{"step": float(s), "loss": 3.0 - s / 10} for s in range(1, 11)]

    def trained(r: Any) -> None:
        r.history, r.loss_curve, r.trained_tokens = history, str(png), 12345

    store.update("plot-1", trained)
    assert main(["status", "plot-1", "--plot"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "run plot-1  (received)"
    assert out[1].startswith("2.900 ┤•") and out[-1] == f"loss curve PNG: {png}"
    assert main(["status", "plot-1"]) == 0
    detail = capsys.readouterr().out
    assert "trained tokens: 12,345" in detail and f"loss curve PNG: {png}" in detail
    assert main(["status", "--plot"]) == 2  # which run's?


def test_status_shows_the_model_lines_aliases(use_runtime: Any, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    store, _, _ = make_store(clock)
    platform = FakePlatform(clock)
    use_runtime(store=store, platform=platform)
    store.create("alias-1", config_blob="a.yaml", config_name="a", content=b"x", config_etag=None, platform="fake")
    store.update("alias-1", lambda r: (setattr(r, "model_name", "line"), setattr(r, "model_version", "2")))
    platform.aliases["line"] = {"champion": "1", "challenger": "2"}
    assert main(["status", "alias-1"]) == 0
    assert "  model: line:2  [challenger; champion is 1]" in capsys.readouterr().out.splitlines()
    assert main(["status", "alias-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_aliases"] == {"champion": "1", "challenger": "2"}
