"""The JSON Schema of the training config, generated from the pydantic model (never written by hand).

``python -m shared.config.schema --write`` regenerates ``schemas/training-config.schema.json``; a test fails
when the shipped file is stale.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from shared.config.model import TrainingConfig

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "training-config.schema.json"


def _integral_floats_as_ints(value: Any) -> Any:
    # pydantic shares equal constraint objects between fields (Le(1) == Le(1.0)), so whether a bound prints
    # as 1 or 1.0 depends on which field was built first; JSON Schema means the same by both.
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def generate_schema() -> dict[str, Any]:
    schema: dict[str, Any] = _integral_floats_as_ints(TrainingConfig.model_json_schema(mode="validation"))
    schema["$id"] = "https://finetune-autopilot.local/schemas/training-config.schema.json"
    return schema


def render() -> str:
    return json.dumps(generate_schema(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"write {SCHEMA_PATH.name}")
    args = parser.parse_args()
    if args.write:
        SCHEMA_PATH.write_text(render(), encoding="utf-8")
    else:
        print(render(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
