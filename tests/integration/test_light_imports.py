"""The local platform's control side loads no ML stack: submitting or listing must not import torch.

Before: ``local.platform.endpoints`` imported the endpoint server for four file names, and with it torch
(3.5 s), so the first config dropped on a fresh host took 5 s and more to be submitted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_building_the_local_platform_imports_no_ml_stack(tmp_path: Path) -> None:
    code = (
        "import sys; from shared.settings import Settings; from local.platform.adapter import LocalPlatform; "
        f"LocalPlatform(Settings.from_env({{'AUTOPILOT_WORKDIR': {str(tmp_path)!r}}})); "
        "print([m for m in ('torch', 'transformers', 'peft', 'mlflow') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
