"""Turn the bytes of a dropped file into a validated ``TrainingConfig``, or a ``ConfigError`` naming fields.

The file is untrusted: size is capped before parsing, YAML aliases are refused (a "billion laughs" file is
rejected as soon as the parser meets the first alias, with bounded memory), nesting depth is capped, duplicate
keys are errors, and bytes must be UTF-8. JSON or YAML is chosen by content, not by file extension.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from shared.config.limits import MAX_CONFIG_BYTES
from shared.config.model import NotifySection, TrainingConfig
from shared.config.wording import plain_message
from shared.exceptions import ConfigError, FieldIssue
from shared.jsonlimits import json_depth_ok

MAX_DEPTH = 32
log = logging.getLogger(__name__)


class _UnreadableValue(yaml.constructor.ConstructorError):
    """A scalar PyYAML recognised but could not build; ``field`` is its key path in the document."""

    def __init__(self, field: str, problem: str, mark: Any) -> None:
        super().__init__(None, None, problem, mark)
        self.field = field


class _StrictLoader(yaml.SafeLoader):
    """safe_load, minus aliases and duplicate keys, with a depth cap."""

    _depth = 0

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        # id(node) -> its key path, filled by the parent mapping/sequence before the child is built.
        self._paths: dict[int, str] = {}

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

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        # PyYAML's own constructors raise plain ValueError/KeyError/AttributeError/OverflowError for scalars
        # they recognise by tag or pattern but cannot build (2024-13-45, !!float abc, !!int 0xZZ, a
        # 5000-digit integer, !!bool maybe). Turn each into a marked YAML error so it is a field error too.
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, IndexError) as exc:
            shown = repr(node.value) if isinstance(node, yaml.ScalarNode) else node.tag
            shown = shown if len(shown) <= 40 else shown[:40] + "..."
            reason = str(exc)
            reason = reason if len(reason) <= 80 else reason[:80] + "..."
            kind = node.tag.rsplit(":", 1)[-1]
            field = self._paths.get(id(node), "")
            raise _UnreadableValue(field, f"cannot read {shown} as {kind} ({reason})", node.start_mark) from None

    def construct_sequence(self, node: Any, deep: bool = False) -> Any:
        parent = self._paths.get(id(node), "")
        for index, child in enumerate(node.value if isinstance(node, yaml.SequenceNode) else ()):
            self._paths[id(child)] = f"{parent}[{index}]"
        return super().construct_sequence(node, deep=deep)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        parent = self._paths.get(id(node), "")
        for key_node, value_node in node.value:
            self._paths[id(key_node)] = parent
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool):
                self._paths[id(value_node)] = f"{parent}.{key}" if parent else str(key)
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
        if not json_depth_ok(text, MAX_DEPTH):
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
    except _UnreadableValue as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1} column {mark.column + 1})" if mark else ""
        raise ConfigError([FieldIssue(exc.field, f"{exc.problem}{where}")]) from None
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


def _message(err: Any, root: type[BaseModel]) -> str:
    plain = plain_message(err, root)
    if plain is not None:
        return plain
    kind = err["type"]
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith("Input should be "):  # pydantic's subject is its input; the file's is the field
        msg = "must be " + msg[len("Input should be ") :]
    if kind not in {"value_error", "assertion_error"} and "input" in err and not isinstance(err["input"], dict | list):
        shown = repr(err["input"])
        msg += f" (got {shown[:60] + '...' if len(shown) > 60 else shown})"
    return msg


def issues_from_validation(
    exc: ValidationError, prefix: str = "", root: type[BaseModel] = TrainingConfig
) -> list[FieldIssue]:
    """Pydantic errors as ``path: message`` issues in the config's words (shared/config/wording.py), ``root``
    the section the errors' locations start from. Union branches pydantic tries are folded into one."""
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
        issues.append(FieldIssue(path, _message({**err, "loc": loc}, root)))
    return issues


def validate_data(data: Any) -> TrainingConfig:
    if not isinstance(data, dict):
        raise ConfigError([FieldIssue("", f"the document must be a mapping of sections, not {type(data).__name__}")])
    try:
        return TrainingConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from_validation(exc)) from None


def notify_section_of(data: bytes) -> NotifySection | None:
    """The ``notify`` section of a config that may be invalid elsewhere, if that section itself is valid."""
    try:
        document = parse_document(data)
    except Exception:  # whatever made the config unreadable is reported on its own; here: no section
        return None
    raw = document.get("notify") if isinstance(document, dict) else None
    if not isinstance(raw, dict):
        return None
    try:
        return NotifySection.model_validate(raw)
    except ValidationError:
        return None


def load_config(data: bytes) -> TrainingConfig:
    """Bytes of a YAML or JSON file to a validated config. Every failure is a ``ConfigError``.

    The last clause is the backstop the property tests hold us to: a parser or validator bug that raises
    anything else must still end the run ``rejected`` with a reason, never strand it in ``received``.
    """
    try:
        return validate_data(parse_document(data))
    except ConfigError:
        raise
    except (RecursionError, MemoryError):
        raise ConfigError([FieldIssue("", "document too deeply nested or too large to read")]) from None
    except Exception as exc:  # see the docstring
        log.warning("config loader raised %s; reported as a config error", type(exc).__name__)
        raise ConfigError([FieldIssue("", f"the file could not be read as a config ({type(exc).__name__})")]) from None
