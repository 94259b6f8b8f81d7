"""Safe parsing of the foundation model's tags (Python literals written by the registry).

``ast.literal_eval`` runs no code, but a few hundred hostile characters can exhaust memory or the stack while
parsing. The text is length-capped and pre-scanned for nesting depth before it reaches the parser, big
integers are refused, and every failure becomes a ``ModelTagError`` that names the tag.
"""

from __future__ import annotations

import ast
import math
from typing import Any

from shared.exceptions import FieldIssue, ModelTagError

MAX_TAG_CHARS = 4096
MAX_NESTING = 4
MAX_INT_DIGITS = 18

FINETUNE_ALLOW_LIST = "finetune_compute_allow_list"
INFERENCE_ALLOW_LIST = "inference_compute_allow_list"
MODEL_DEFAULTS = "model_specific_defaults"


def _fail(tag: str, message: str) -> ModelTagError:
    return ModelTagError([FieldIssue(f"model.tags.{tag}", message)])


def _nesting(text: str) -> int:
    depth = deepest = 0
    quote: str | None = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    return deepest


def _check_values(tag: str, value: Any) -> None:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(tag, "numbers must be finite (no inf or nan)")
        return
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if len(str(abs(value))) > MAX_INT_DIGITS:
            raise _fail(tag, f"integer with more than {MAX_INT_DIGITS} digits")
        return
    if isinstance(value, list | tuple | set):
        for item in value:
            _check_values(tag, item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_values(tag, key)
            _check_values(tag, item)
        return
    raise _fail(tag, f"unsupported value of type {type(value).__name__}")


def parse_literal(tag: str, text: str) -> Any:
    """Parse one tag value as a Python literal, safely."""
    if not isinstance(text, str):
        raise _fail(tag, "tag value must be text")
    if len(text) > MAX_TAG_CHARS:
        raise _fail(tag, f"value is {len(text)} characters; at most {MAX_TAG_CHARS} are parsed")
    if _nesting(text) > MAX_NESTING:
        raise _fail(tag, f"value nests deeper than {MAX_NESTING} levels")
    # Exponent-style big numbers (9**9**9) are expressions and refused by literal_eval itself; long digit
    # runs are refused here before int() conversion can burn CPU.
    run = longest = 0
    for ch in text:
        run = run + 1 if ch.isdigit() else 0
        longest = max(longest, run)
    if longest > 64:
        raise _fail(tag, "value contains a number with more than 64 digits")
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError) as exc:
        raise _fail(tag, f"not a Python literal ({type(exc).__name__}: {str(exc)[:80]})") from None
    except (MemoryError, RecursionError):
        raise _fail(tag, "value too complex to parse") from None
    _check_values(tag, value)
    return value


def parse_sku_list(tags: dict[str, str], tag: str) -> list[str] | None:
    """An allow list of SKUs, or ``None`` when the model has no such tag."""
    if tag not in tags:
        return None
    value = parse_literal(tag, tags[tag])
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _fail(tag, "expected a list of SKU names")
    return [str(v) for v in value]


def parse_model_defaults(tags: dict[str, str]) -> dict[str, Any]:
    """The model's default training parameters, or ``{}``."""
    if MODEL_DEFAULTS not in tags:
        return {}
    value = parse_literal(MODEL_DEFAULTS, tags[MODEL_DEFAULTS])
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(MODEL_DEFAULTS, "expected a dict of parameter names to values")
    return value
