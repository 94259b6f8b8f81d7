"""Read the deployment's files for the infra tests: the Bicep (parsed with pycep), roles.json, the azd hooks."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
RESOURCES = INFRA / "app" / "resources.bicep"
RBAC = INFRA / "app" / "rbac.bicep"
PROCESSOR = INFRA / "app" / "processor.bicep"
MAIN = INFRA / "main.bicep"
INFRA_VENV = ROOT / ".venv-infra"


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@functools.cache
def parsed(path: Path) -> dict[str, Any]:
    from pycep import BicepParser

    tree: dict[str, Any] = dict(BicepParser().parse(text=path.read_text(encoding="utf-8")))
    return tree


def app_settings() -> dict[str, Any]:
    """The Function App's settings as declared (values: literal strings or pycep expressions)."""
    value: dict[str, Any] = parsed(RESOURCES)["variables"]["appSettings"]["value"]
    return value


def roles(kind: str = "roles") -> list[dict[str, str]]:
    """infra/roles.json: ``roles`` (the app identity's) or ``deployerRoles`` (the person who runs azd up)."""
    loaded: list[dict[str, str]] = json.loads((INFRA / "roles.json").read_text(encoding="utf-8"))[kind]
    return loaded


@functools.cache
def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("azd_hooks", INFRA / "hooks" / "azd_hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def checkov_executable() -> Path:
    """``.venv-infra/bin/checkov`` (made by ``make infra-venv``): skip without it, fail under CI."""
    found = INFRA_VENV / "bin" / "checkov"
    if found.is_file() or shutil.which(str(found)):
        return found
    reason = f"{found} is missing: run `make infra-venv` (checkov lives in its own venv, it would downgrade packaging)"
    if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
        pytest.fail(f"{reason} (CI=true: the checkov check must run)", pytrace=False)
    pytest.skip(reason)
