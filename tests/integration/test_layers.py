"""The two wings: the Function App package (everything `.funcignore` keeps) works without the local twin and
the CLI, and the import rules in pyproject.toml hold (the same contracts `lint-imports` checks in CI)."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Run in the copy: imports every module the package has and fails if anything under `local` or `autopilot` is reached.
PROBE = r"""
import importlib, importlib.abc, pkgutil, sys

class NoLocal(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("local", "autopilot"):
            raise ImportError(f"the Function App package imported {name}")
        return None

sys.meta_path.insert(0, NoLocal())
import function_app
names = sorted(f.get_function_name() for f in function_app.app.get_functions())
import shared, functions
for package in (shared, functions):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
print(",".join(names))
"""


def funcignore_patterns() -> list[str]:
    lines = (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    for pattern in patterns:
        if "/" in pattern:
            if relative == pattern or relative.startswith(pattern + "/"):
                return True
        elif any(fnmatch.fnmatch(part, pattern) for part in parts):
            return True
    return False


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in out.stdout.splitlines() if (ROOT / line).is_file()]


def test_funcignore_keeps_the_local_twin_the_cli_tests_samples_and_benchmarks_out() -> None:
    patterns = funcignore_patterns()
    for path in (
        "local/platform/training/recipe.py",
        "autopilot/main.py",
        "tests/conftest.py",
        "benchmarks/import_time.py",
    ):
        assert ignored(path, patterns), path
    for path in ("function_app.py", "shared/runs.py", "functions/events.py", "host.json", "requirements.txt"):
        assert not ignored(path, patterns), path


def test_the_function_app_package_imports_and_indexes_without_the_local_twin(tmp_path: Path) -> None:
    patterns = funcignore_patterns()
    package = tmp_path / "package"
    for relative in tracked_files():
        if not ignored(relative, patterns):
            target = package / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, target)
    assert not (package / "local").exists() and not (package / "autopilot").exists()
    assert (package / "shared").is_dir()
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(package)!r})\n{PROBE}"],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    functions = "cleanup,deliver_notifications,deploy,followup,reconcile,register,submit"
    assert result.stdout.strip().splitlines()[-1] == functions


def test_import_rules_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    if not linter.exists():
        pytest.fail("import-linter is a dev requirement: pip install -r requirements-dev.txt")
    result = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout
