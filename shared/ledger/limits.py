"""What one run may hold, owned by the ledger: services check against these instead of restating them."""

from __future__ import annotations

import json
from typing import Any

# Azure Table string properties hold at most 64 KiB (32K UTF-16 characters); each JSON column is one property.
MAX_PROPERTY_CHARS = 32_000
# What a service may put in one JSON field of a run: the property limit less a margin for encoding.
MAX_FIELD_JSON_CHARS = 30_000


def json_chars(value: Any) -> int:
    """The size of ``value`` as the ledger stores it."""
    return len(json.dumps(value, separators=(",", ":"), sort_keys=True))
