"""Turn the bytes of a dropped file into a validated ``TrainingConfig``, or a ``ConfigError`` naming fields.

The file is untrusted: size is capped before parsing, YAML aliases are refused (a "billion laughs" file is
rejected as soon as the parser meets the first alias, with bounded memory), nesting depth is capped, duplicate
keys are errors, and bytes must be UTF-8. JSON or YAML is chosen by content, not by file extension.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import ValidationError

from shared.config.limits import MAX_CONFIG_BYTES
from shared.config.model import TrainingConfig
from shared.exceptions import ConfigError, FieldIssue

MAX_DEPTH = 32


class _StrictLoader(yaml.SafeLoader):
    """safe_load, minus aliases and duplicate keys, with a depth cap."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in training configs", event.start_mark
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                raise yaml.constructor.ConstructorError(None, None, "mapping keys must be scalars", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _json_depth_ok(text: str) -> bool:
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
            if depth > MAX_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def looks_like_json(text: str) -> bool:
    """JSON documents start with an object; YAML configs start with a key or a comment."""
    return text.lstrip().startswith("{")


def parse_document(data: bytes) -> Any:
    """Bytes to plain data. Raises ``ConfigError`` with a position for syntax problems."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([FieldIssue("", f"file is {len(data)} bytes; the limit is {MAX_CONFIG_BYTES} (1 MiB)")])
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([FieldIssue("", f"file is not UTF-8 text (invalid byte at offset {exc.start})")]) from None
    if not text.strip():
        raise ConfigError([FieldIssue("", "file is empty")])
    if looks_like_json(text):
        if not _json_depth_ok(text):
            raise ConfigError([FieldIssue("", f"JSON nesting deeper than {MAX_DEPTH} levels")])
        try:
            return json.loads(text, object_pairs_hook=_json_pairs)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                [FieldIssue("", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")]
            ) from None
        except ValueError as exc:
            raise ConfigError([FieldIssue("", f"invalid JSON: {exc}")]) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError([FieldIssue("", f"invalid YAML{where}: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([FieldIssue("", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise ConfigError([FieldIssue("", "document nested too deeply")]) from None


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + part
    return path


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see schemas/training-config.schema.json)"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind not in {"value_error", "assertion_error"} and "input" in err and not isinstance(err["input"], dict | list):
        shown = repr(err["input"])
        msg += f" (got {shown[:60] + '...' if len(shown) > 60 else shown})"
    return msg


def issues_from_validation(exc: ValidationError, prefix: str = "") -> list[FieldIssue]:
    """Pydantic errors as ``path: message`` issues. Union branches pydantic tries are folded into one."""
    issues: list[FieldIssue] = []
    seen: set[str] = set()
    for err in exc.errors():
        # Drop pydantic's union-branch markers (e.g. 'int', "literal['auto']") from the location.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in {"int", "str", "float"})))
        path = _loc_to_path(loc)
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        if path in seen:
            continue
        seen.add(path)
        issues.append(FieldIssue(path, _message(err)))
    return issues


def validate_data(data: Any) -> TrainingConfig:
    if not isinstance(data, dict):
        raise ConfigError([FieldIssue("", f"the document must be a mapping of sections, not {type(data).__name__}")])
    try:
        return TrainingConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from_validation(exc)) from None


def notify_section_of(data: bytes) -> dict[str, Any] | None:
    """The ``notify`` section of a config that may be invalid elsewhere, if that section itself is valid."""
    from shared.config.model import NotifySection

    try:
        document = parse_document(data)
    except Exception:  # whatever made the config unreadable is reported on its own; here: no section
        return None
    raw = document.get("notify") if isinstance(document, dict) else None
    if not isinstance(raw, dict):
        return None
    try:
        return NotifySection.model_validate(raw).model_dump(mode="json")
    except ValidationError:
        return None


def load_config(data: bytes) -> TrainingConfig:
    """Bytes of a YAML or JSON file to a validated config. Every failure is a ``ConfigError``."""
    return validate_data(parse_document(data))
