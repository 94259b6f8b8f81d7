"""A nesting-depth check for JSON text, done before ``json.loads``: Python's parser recurses, and a body of
100 000 ``[`` raises ``RecursionError``, which nothing expects (a 500 on a server, a crash in a loader)."""

from __future__ import annotations


def json_depth_ok(text: str, max_depth: int) -> bool:
    """Whether no array/object in ``text`` is nested deeper than ``max_depth`` (brackets in strings ignored)."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif ch in "]}":
            depth -= 1
    return True
