"""The CLI on a fresh clone: sample data found, usage errors exit 2, "did you mean", --version, validate's
several files, stdin and JSON, and no azure.identity chatter at the default verbosity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.configs import config_bytes

ROOT = Path(__file__).resolve().parents[3]


def run_cli(*args: str, stdin: str | None = None, cwd: Path = ROOT, workdir: Path) -> subprocess.CompletedProcess[str]:
    """The CLI as a new user runs it: no AUTOPILOT_* setting in the environment, nothing but the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_") and k != "AzureWebJobsStorage"}
    env.update(AUTOPILOT_WORKDIR=str(workdir), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "autopilot.main", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_sample_config_plans_on_a_fresh_clone_without_a_data_root(tmp_path: Path) -> None:
    result = run_cli("plan", "samples/demo-smollm2.yaml", "--platform", "local", workdir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "not found under the data root" not in result.stdout + result.stderr


def test_data_not_found_says_in_one_line_how_to_point_at_it(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.yaml"
    config.write_bytes((ROOT / "samples" / "demo-smollm2.yaml").read_bytes().replace(b"ultrachat_sample/", b"mine/"))
    result = run_cli("plan", str(config), "--platform", "local", workdir=tmp_path)
    assert result.returncode == 1
    assert "AUTOPILOT_DATA_ROOT" in result.stderr.splitlines()[-1]


def test_a_missing_file_named_on_the_command_line_is_a_usage_error(tmp_path: Path) -> None:
    plan = run_cli("plan", "samples/demo-smollm2.yaml", "--component", str(tmp_path / "no.yaml"), workdir=tmp_path)
    assert plan.returncode == 2 and plan.stderr.strip() == f"error: --component: no such file: {tmp_path / 'no.yaml'}"
    submit = run_cli("submit", str(tmp_path / "no.yaml"), workdir=tmp_path)
    assert submit.returncode == 2 and "no such file" in submit.stderr


def test_a_mistyped_command_or_choice_gets_the_closest_one(tmp_path: Path) -> None:
    command = run_cli("statsu", workdir=tmp_path)
    assert command.returncode == 2 and "did you mean 'status'?" in command.stderr
    choice = run_cli("plan", "x.yaml", "--platform", "azrueml", workdir=tmp_path)
    assert choice.returncode == 2 and "did you mean 'azureml'?" in choice.stderr


def test_version_is_the_projects(tmp_path: Path) -> None:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        expected = tomllib.load(handle)["project"]["version"]
    result = run_cli("--version", workdir=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"autopilot {expected}"


def test_validate_takes_several_files_and_stdin_and_answers_in_json(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_bytes(config_bytes())
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(config_bytes(trainig={"max_steps": 1}))
    text = run_cli("validate", str(good), str(bad), "-", stdin=config_bytes().decode(), workdir=tmp_path)
    assert text.returncode == 1
    assert text.stdout.splitlines() == [
        f"{good}: valid",
        f"{bad}: trainig: unknown key; did you mean `training`?",
        "(stdin): valid",
    ]
    as_json = run_cli("validate", "--json", str(good), str(bad), str(tmp_path / "gone.yaml"), workdir=tmp_path)
    assert as_json.returncode == 2  # one file cannot be read: a usage error wins over an invalid config
    report = json.loads(as_json.stdout)
    assert [(r["valid"], [i["path"] for i in r["issues"]]) for r in report] == [
        (True, []),
        (False, ["trainig"]),
        (False, [""]),
    ]


def test_no_credential_warnings_at_the_default_verbosity(tmp_path: Path) -> None:
    # azure.identity logs a WARNING per credential it could not use before the command says so in one line.
    script = (
        "import logging, sys; from autopilot.main import main; "
        f"main(['validate', {str(tmp_path / 'c.yaml')!r}]); "
        "logging.getLogger('azure.identity._credentials.chained').warning('chain failed'); "
        "logging.getLogger('shared.something').warning('kept')"
    )
    (tmp_path / "c.yaml").write_bytes(config_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    quiet = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert "kept" in quiet.stderr and "chain failed" not in quiet.stderr
    loud = subprocess.run(
        [sys.executable, "-c", script.replace("['validate'", "['-v', 'validate'")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "chain failed" in loud.stderr
