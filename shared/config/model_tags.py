"""Safe parsing of the foundation model's tags (Python literals written by the registry), and reading its
allow lists and lifecycle from ``system_metadata`` or, for older versions, from tags.

``ast.literal_eval`` runs no code, but a few hundred hostile characters can exhaust memory or the stack while
parsing. The text is length-capped and pre-scanned for nesting depth before it reaches the parser, big
integers are refused, and every failure becomes a ``ModelTagError`` that names the tag.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from datetime import date, datetime
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


# -- where allow lists and lifecycle dates live ------------------------------------------------------------
# Since 2026-06-16 (azureml-assets commit 041983980392) the registry keeps the compute allow lists in
# ``system_metadata.supportedComputes`` and the dates in ``system_metadata.deprecation``; older model versions
# keep them in tags (``finetune_compute_allow_list``, ``FinetuneRetirementDate``, ...). Both are read, system
# metadata first, and every answer says which one it came from.
SUPPORTED_COMPUTES = "supportedComputes"
ALLOW_LIST_KEYS = {
    "finetune": ("finetuneComputes", FINETUNE_ALLOW_LIST),
    "inference": ("inferenceComputes", INFERENCE_ALLOW_LIST),
}
DEPRECATION = "deprecation"
# lifecycle key -> (system_metadata.deprecation key, tag of older versions)
LIFECYCLE_KEYS = {
    "finetune_deprecation": ("finetuneDeprecationDate", "FinetuneDeprecationDate"),
    "finetune_retirement": ("finetuneRetirementDate", "FinetuneRetirementDate"),
    "inference_deprecation": ("inferenceDeprecationDate", "InferenceDeprecationDate"),
    "inference_retirement": ("inferenceRetirementDate", "InferenceRetirementDate"),
}
# Models offered for chat-completion fine-tuning and neither deprecated nor archived, in the registry snapshot
# the project checked (Azure/azureml-assets 4b41f8cc, 2026-07-23: system_metadata.tasks.fineTuningTasks).
CHAT_FINETUNE_MODELS = ("Phi-4",)
CHAT_FINETUNE_MODELS_SOURCE = "the azureml registry snapshot of 2026-07-23; the model catalog lists the current ones"


@dataclass(frozen=True)
class AllowList:
    """A compute allow list and where it came from; ``skus`` None: the model declares none."""

    kind: str  # "finetune" | "inference"
    skus: list[str] | None
    source: str

    def describe(self) -> str:
        if self.skus is None:
            return f"no {self.kind} allow list ({self.source})"
        return f"{', '.join(self.skus)} (from {self.source})"


def _sku_names(path: str, value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ModelTagError([FieldIssue(path, "expected a list of SKU names")])
    return [str(v) for v in value]


def read_allow_list(kind: str, tags: dict[str, str], system_metadata: dict[str, Any]) -> AllowList:
    """The ``kind`` allow list: ``system_metadata.supportedComputes`` first, the tag of older versions second."""
    meta_key, tag = ALLOW_LIST_KEYS[kind]
    computes = system_metadata.get(SUPPORTED_COMPUTES)
    if isinstance(computes, dict) and meta_key in computes:
        path = f"system_metadata.{SUPPORTED_COMPUTES}.{meta_key}"
        return AllowList(kind, _sku_names(f"model.{path}", computes[meta_key]), path)
    skus = parse_sku_list(tags, tag)
    if skus is not None:
        return AllowList(kind, skus, f"tags.{tag}")
    return AllowList(
        kind,
        None,
        f"the model has neither system_metadata.{SUPPORTED_COMPUTES}.{meta_key} nor a {tag} tag",
    )


@dataclass(frozen=True)
class Lifecycle:
    """A model's archived flag and lifecycle dates, with where the dates came from."""

    archived: bool = False
    dates: dict[str, date] = field(default_factory=dict)
    source: str = ""

    def _date(self, key: str) -> date | None:
        return self.dates.get(key)

    def retired(self, use: str, today: date) -> bool:
        """Retired for ``use`` ("finetune" | "inference"): past its retirement date, or archived."""
        retirement = self._date(f"{use}_retirement")
        return self.archived or (retirement is not None and today >= retirement)

    def deprecated(self, use: str, today: date) -> bool:
        deprecation = self._date(f"{use}_deprecation")
        return deprecation is not None and today >= deprecation

    def describe(self, use: str) -> str:
        """``archived in the registry; fine-tuning deprecated 2025-06-30, retired 2025-08-30 (source)``."""
        label = "fine-tuning" if use == "finetune" else "inference"
        parts = ["archived in the registry"] if self.archived else []
        deprecation, retirement = self._date(f"{use}_deprecation"), self._date(f"{use}_retirement")
        dated = [f"deprecated {deprecation}" if deprecation else "", f"retired {retirement}" if retirement else ""]
        dated = [d for d in dated if d]
        if dated:
            parts.append(f"{label} {', '.join(dated)} (from {self.source})")
        return "; ".join(parts) or f"no lifecycle dates for {label}"


def _parse_date(path: str, value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ModelTagError([FieldIssue(path, f"{text[:40]!r} is not a date (YYYY-MM-DD...)")]) from None


def read_lifecycle(tags: dict[str, str], system_metadata: dict[str, Any], archived: bool) -> Lifecycle:
    """Dates from ``system_metadata.deprecation``, else from the ``*Date`` tags of older versions."""
    deprecation = system_metadata.get(DEPRECATION)
    if isinstance(deprecation, dict) and deprecation:
        found = {
            key: _parse_date(f"model.system_metadata.{DEPRECATION}.{meta}", deprecation[meta])
            for key, (meta, _) in LIFECYCLE_KEYS.items()
            if deprecation.get(meta)
        }
        return Lifecycle(archived, found, f"system_metadata.{DEPRECATION}")
    found = {
        key: _parse_date(f"model.tags.{tag}", tags[tag]) for key, (_, tag) in LIFECYCLE_KEYS.items() if tags.get(tag)
    }
    names = [tag for _, tag in LIFECYCLE_KEYS.values() if tags.get(tag)]
    return Lifecycle(archived, found, "tags " + ", ".join(names) if found else "")
