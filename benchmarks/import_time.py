"""Import cost of the Functions app against the heavy SDKs it must not load at start-up.

Runs each import in a fresh interpreter, several times, and prints the medians and their ratio:
    .venv/bin/python benchmarks/import_time.py
Target (issue 2): `import function_app` takes at most 20% of `import azure.ai.ml, mlflow`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 5


def time_import(statement: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    # One warm-up each so the page cache holds both sets of files, as on a warm Functions host.
    time_import("import function_app")
    time_import("import azure.ai.ml, mlflow")
    app = [time_import("import function_app") for _ in range(REPEATS)]
    heavy = [time_import("import azure.ai.ml, mlflow") for _ in range(REPEATS)]
    leaked = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, function_app; print(sorted(m for m in "
            "('azure.ai.ml', 'mlflow', 'torch', 'transformers') if m in sys.modules))",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    a, h = statistics.median(app), statistics.median(heavy)
    print(f"import function_app          median {a:.3f} s  (runs: {', '.join(f'{x:.2f}' for x in app)})")
    print(f"import azure.ai.ml, mlflow   median {h:.3f} s  (runs: {', '.join(f'{x:.2f}' for x in heavy)})")
    print(f"ratio {a / h:.1%} (target <= 20%); heavy modules loaded by function_app: {leaked}")
    return 0 if a / h <= 0.20 and leaked == "[]" else 1


if __name__ == "__main__":
    raise SystemExit(main())
