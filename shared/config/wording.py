"""Pydantic's validation errors in the words of the config file: sections, keys, text, numbers.

A user writes YAML, not Python: "Input should be a valid dictionary or instance of ModelSection" says the
section is the wrong kind of thing in pydantic's terms, so it becomes ``expected a section {name: ...}, got a
string``; a name's regular expression becomes the rule in words; an unknown key gets the closest known key
(stdlib ``difflib``) as a "did you mean".
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel

# What YAML/JSON values are called in the messages.
_KINDS: dict[type, str] = {
    str: "a string",
    bool: "true or false",
    int: "a number",
    float: "a number",
    list: "a list",
    dict: "a section",
    type(None): "nothing (null)",
}
# Pydantic error types, by what they expected.
_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a section",
}


def kind_of(value: Any) -> str:
    """A YAML value's kind in words: ``a string``, ``a number``, ``a list``..."""
    for cls, word in _KINDS.items():
        if type(value) is cls:
            return word
    return f"a {type(value).__name__}"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (``X | None``, ``list[X]``, ``dict[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None:
        return []
    found: list[type[BaseModel]] = []
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        args = args[:1]
    elif origin not in (typing.Union, types.UnionType, list, tuple, dict):
        return []
    for arg in args:
        found.extend(_models_in(arg))
    return found


def section_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The section (pydantic model) found by following ``loc`` from ``root``; list indices are skipped."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        models = _models_in(field.annotation)
        model = models[0] if models else None
    return model


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str | None:
    """The choice closest to ``word``, if one is close enough to be a likely typo."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    key = str(loc[-1]) if loc else ""
    section = section_at(root, loc[:-1])
    known = list(section.model_fields) if section is not None else []
    guess = did_you_mean(key, known)
    if guess is not None:
        return f"unknown key; did you mean `{guess}`?"
    if known:
        return f"unknown key (the keys here: {', '.join(known)})"
    return "unknown key (check the spelling; see schemas/training-config.schema.json)"


def section_shape(model: type[BaseModel]) -> str:
    """A section as a user would write it: its required keys, else its first key."""
    required = [name for name, f in model.model_fields.items() if f.is_required()]
    keys = required or list(model.model_fields)[:1]
    return "{" + ", ".join(f"{k}: ..." for k in keys) + "}"


# --- regular expressions of the name rules, in words -----------------------------------------------------
_CLASS = r"\[([^\]]+)\]"
_RULE = re.compile(rf"^\^(?:{_CLASS})?{_CLASS}(\*|\+|\{{(\d+),(\d+)\}})\$$")
# Rules that are not a name (the generic reading below is for names).
_SIZES = {r"^[0-9]{1,4}[kmg]$": "a size: 1 to 4 digits and a unit k, m or g (e.g. 5g)"}
_ONE = {
    "letters": "a letter",
    "lowercase letters": "a lowercase letter",
    "capital letters": "a capital letter",
    "digits": "a digit",
}
_PUNCTUATION = {".": "dots", "_": "underscores", "-": "hyphens", "/": "slashes"}


def _class_words(body: str) -> list[str]:
    words: list[str] = []
    if "A-Z" in body and "a-z" in body:
        words.append("letters")
    elif "a-z" in body:
        words.append("lowercase letters")
    elif "A-Z" in body:
        words.append("capital letters")
    if "0-9" in body:
        words.append("digits")
    rest = body.replace("A-Z", "").replace("a-z", "").replace("0-9", "")
    words.extend(_PUNCTUATION.get(c, f"`{c}`") for c in rest)
    return words


def _listing(words: list[str], last: str = "and") -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def pattern_in_words(pattern: str) -> str | None:
    """A name rule's regex (``^[A-Za-z0-9][A-Za-z0-9._-]*$``) as words, or None for a shape not known here."""
    if pattern in _SIZES:
        return _SIZES[pattern]
    match = _RULE.match(pattern)
    if match is None:
        return None
    first, body, quantifier, low, high = match.groups()
    allowed = _listing(_class_words(body))
    if quantifier in ("*", "+"):
        text = f"only {allowed}"
    else:
        lo, hi = int(low) + (1 if first else 0), int(high) + (1 if first else 0)
        text = f"{lo} to {hi} characters: {allowed}" if lo != hi else f"{lo} characters: {allowed}"
    if first:
        starts = [_ONE.get(word, word) for word in _class_words(first)]
        text += f", starting with {_listing(starts, 'or')}"
    return text


def plain_message(err: dict[str, Any], root: type[BaseModel]) -> str | None:
    """Pydantic's error in the config's words, or None to keep pydantic's own."""
    kind = err["type"]
    loc = tuple(err["loc"])
    given = err.get("input")
    if kind == "extra_forbidden":
        return unknown_key(root, loc)
    if kind == "missing":
        return "required field is missing"
    if kind in ("model_type", "model_attributes_type") or (kind == "dict_type" and section_at(root, loc)):
        section = section_at(root, loc)
        shape = f" {section_shape(section)}" if section is not None else ""
        return f"expected a section{shape}, got {kind_of(given)}"
    if kind == "string_pattern_mismatch":
        rule = pattern_in_words(str((err.get("ctx") or {}).get("pattern", "")))
        if rule is not None:
            return f"must be {rule} (got {given!r})"
    if kind in _EXPECTED:
        got = repr(given) if isinstance(given, int | float) and not isinstance(given, bool) else kind_of(given)
        if isinstance(given, str):
            got += f" ({given[:40]!r})"
        return f"expected {_EXPECTED[kind]}, got {got}"
    return None
