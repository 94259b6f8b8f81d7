"""What one run may hold, owned by the ledger: services check against these instead of restating them."""

from __future__ import annotations

import json
from typing import Any

# Azure Table string properties hold at most 64 KiB (32K UTF-16 characters); each JSON column is one property.
MAX_PROPERTY_CHARS = 32_000
# What a service may put in one JSON field of a run: the property limit less a margin for encoding.
MAX_FIELD_JSON_CHARS = 30_000
# What a run keeps of the problems it failed on (``parts.summarised``): a person reads the first ones, fixes
# them and submits again; the rest are counted, so a rejection of any size fits the run.
MAX_ERRORS_KEPT = 50
MAX_ERROR_PATH_CHARS = 200
MAX_ERROR_MESSAGE_CHARS = 1_000


def stored_json(value: Any) -> str:
    """``value`` as the ledger stores a nested field: compact JSON text with sorted keys."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def json_chars(value: Any) -> int:
    """The size of ``value`` as the ledger stores it."""
    return len(stored_json(value))


def checked_json(field: str, value: Any) -> str:
    """The stored text of a nested field; ``ValueError`` naming the field when it is over the property limit.
    Every ledger applies it, so a run too big for Azure Table is refused by the in-memory one too."""
    text = stored_json(value)
    if len(text) > MAX_PROPERTY_CHARS:
        raise ValueError(f"ledger field {field} is {len(text)} characters; the table limit is {MAX_PROPERTY_CHARS}")
    return text
