"""Load the event payloads in tests/events/ with placeholders filled in (one helper for every test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).parent / "events"
WORKSPACE_TOPIC = (
    "/subscriptions/a5fe3bc5-98f0-4c84-affc-a589f54d6c3a/resourceGroups/rg-ml/providers/"
    "Microsoft.MachineLearningServices/workspaces/ws-finetune"
)


def load_event(name: str, **placeholders: str) -> dict[str, Any]:
    """``load_event("run_completed_pascal", RUN_ID="x-1234abcd")``: the payload with placeholders replaced."""
    text = (EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8")
    for key, value in placeholders.items():
        text = text.replace(key, value)
    event: dict[str, Any] = json.loads(text)
    return event
