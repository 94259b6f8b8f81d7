"""Offline stand-in for the Bicep compiler's deploy-time-constant rule, over pycep-parser's parsed tree.

ARM must know some values before it starts a deployment: a resource's or module's ``name``, ``scope`` and
``parent``; a resource's other top-level ``location``, ``kind``, ``sku``, ``tags``, ``identity`` (so the keys of
``userAssignedIdentities``), ``zones``, ``plan``...; a module's ``identity``; every ``if`` condition and every
``for`` source (and the whole body of a ``for`` that is a variable's value). The compiler refuses a template whose
such value depends, directly or through variables, on a module's ``outputs``, a resource's runtime properties
(anything but ``id``, ``name``, ``type``, ``apiVersion``) or a runtime function (``reference()``, ``list*()``):
errors BCP120 (a property), BCP177 (an ``if``), BCP178 (a ``for`` source), BCP182 (a variable's ``for`` body).
The rule is Azure/bicep's ``src/Bicep.Core/TypeSystem/DeployTimeConstant*.cs`` and
``Providers/Az/AzResourceTypeProvider.cs`` (``ReadWriteDeployTimeConstantPropertyNames``,
``WriteOnlyDeployTimeConstantPropertyNames``); the codes are listed in
https://learn.microsoft.com/azure/azure-resource-manager/bicep/bicep-error-codes. No Bicep compiler can run here
(no network, no .NET), and neither pycep (a parser) nor checkov (a linter) applies this rule, so CI passed a
template ``az deployment`` would refuse.

It walks pycep's Lark tree (``BicepParser().lark_parser``), not pycep's JSON: the JSON keeps no line inside a
declaration and spells a literal string and a reference alike. pycep's grammar has no operator precedence
(``a.b ?? c`` parses as ``a.(b ?? c)``), so a member access is read as "the leftmost name right of the dot".

A resource nested in another reads the names of the resources nested in it and in its ancestors (a sibling, a
parent) as the compiler does; an existing resource nested in, scoped to or a child of one whose name is a runtime
value has a runtime id (the compiler inlines it: ``Emit/InlineDependencyVisitor.cs``).

What it does not do (docs/infrastructure.md): it knows no resource types, so a member of a resource other than
id/name/type/apiVersion always counts as runtime (the compiler stays silent on a property the type lacks); it
does not check BCP181/BCP341/BCP432 (function arguments, user functions), nor anything but this one rule; and a
declaration pycep cannot parse (``func``, ``import``, user-defined types, ``nameof()`` and several other
functions, a nested resource with a loop or a condition) is not checked: ``parse(..., lenient=True)`` skips it and
says which, strict parsing (the default, used on infra/) fails.

Run ``python -m tests.infra.deploy_time_constants [--lenient] [FILE.bicep|DIR ...]`` (default: infra/) for a
report. ``--baselines DIR`` compares it instead with the compiler's own expected diagnostics: DIR is
``src/Bicep.Core.Samples/Files/baselines`` of a checkout of Azure/bicep, kept outside this repository (it is the
compiler's code, not ours); per case it prints the lines both report (agreed), the compiler's lines of the rule it
misses (missing) and its lines the compiler does not report (extra). docs/infrastructure.md says how it was run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import multiprocessing
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import LarkError

BCP_PROPERTY = "BCP120"
BCP_IF = "BCP177"
BCP_FOR = "BCP178"
BCP_VARIABLE_FOR_BODY = "BCP182"
BCP_FUNCTION_NOT_HERE = "BCP066"  # reference()/list*() in an if condition: refused before the rule applies
CODES = (BCP_PROPERTY, BCP_IF, BCP_FOR, BCP_VARIABLE_FOR_BODY, BCP_FUNCTION_NOT_HERE)

# Top-level properties the compiler requires to be known at the start (AzResourceTypeProvider, LanguageConstants).
RESOURCE_START_PROPERTIES = frozenset(
    {
        "name",
        "scope",
        "parent",
        "location",
        "kind",
        "subscriptionId",
        "resourceGroup",
        "managedBy",
        "extendedLocation",
        "zones",
        "placement",
        "plan",
        "sku",
        "identity",
        "managedByExtended",
        "tags",
        "asserts",
    }
)
MODULE_START_PROPERTIES = frozenset({"name", "scope", "identity"})
# In these a whole resource may stand (scope: storageAccount), unless it is an existing one with a runtime name.
SCOPE_PROPERTIES = frozenset({"scope", "parent"})
# What can be read of a resource or a module before the deployment starts (flag ReadableAtDeployTime).
READABLE = {
    "resource": frozenset({"id", "name", "type", "apiVersion", "scope", "parent"}),
    "module": frozenset({"name", "scope"}),
}
# Resource identifiers; an existing resource whose identifiers are runtime has a runtime id (ResourceTypeResolver).
IDENTIFIER_PROPERTIES = ("name", "scope", "parent")
RUNTIME_FUNCTIONS = frozenset({"reference", "list_func"})  # pycep rules; instance calls are function_accessor
ACCESSORS = frozenset({"property_accessor", "index_accessor", "function_accessor", "nested_resource_accessor"})


class BicepParseError(ValueError):
    """pycep cannot parse a declaration (strict mode)."""


@dataclass(frozen=True)
class Violation:
    """A value the compiler needs at the start that depends on a runtime one."""

    path: str
    line: int
    code: str
    container: str  # e.g. "resource storageRoles: name"
    reason: str  # e.g. "var appSettings -> module identity .outputs"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.code} {self.container} depends on {self.reason}"


@dataclass(frozen=True)
class Skipped:
    """Lines of a declaration pycep could not parse (lenient mode only)."""

    first_line: int
    last_line: int
    error: str


@dataclass
class Template:
    path: str
    elements: list[Tree[Token]]
    skipped: list[Skipped] = field(default_factory=list)


@functools.cache
def _parser() -> Lark:
    from pycep import BicepParser

    lark: Lark = BicepParser().lark_parser
    return lark


def _parse_lines(text: str, first_line: int = 1) -> list[Tree[Token]]:
    """Parse ``text`` as if it began at ``first_line`` (blank lines before it keep the line numbers true)."""
    padded = "\n" * (first_line - 1) + text
    if not padded.endswith("\n"):
        padded += "\n"
    tree = _parser().parse(padded)
    return [child for child in tree.children if isinstance(child, Tree)]


_COMMENTS = ("//", "/*", "*")


def _segments(text: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, lines) of each top-level declaration: one starts at column 0 (a decorator starts the one it
    decorates) and runs to the next; blank and comment lines in between go with the one before."""
    start, lines, decorators_only = 0, list[str](), False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        begins = bool(line) and not line[0].isspace() and line[0] not in "}])" and not stripped.startswith(_COMMENTS)
        if not begins:
            if lines:
                lines.append(line)
            continue
        is_decorator = stripped.startswith("@")
        if lines and decorators_only:
            lines.append(line)
            decorators_only = is_decorator
            continue
        if lines:
            yield start, _without_trailing_blanks(lines)
        start, lines, decorators_only = number, [line], is_decorator
    if lines:
        yield start, _without_trailing_blanks(lines)


def _without_trailing_blanks(lines: list[str]) -> list[str]:
    while len(lines) > 1 and (not lines[-1].strip() or lines[-1].lstrip().startswith(_COMMENTS)):
        lines.pop()
    return lines


def parse(text: str, path: str = "<text>", *, lenient: bool = False) -> Template:
    """The template's declarations. Strict: the whole file must parse. Lenient: each declaration on its own,
    skipping (and listing) those pycep cannot parse, for the compiler's own test files, which are full of errors."""
    text = text.lstrip("\ufeff")
    try:
        return Template(path, _parse_lines(text))
    except LarkError as exc:
        if not lenient:
            raise BicepParseError(f"{path}: pycep cannot parse it: {str(exc).splitlines()[0]}") from None
    template = Template(path, [])
    for first, lines in _segments(text):
        try:
            template.elements.extend(_parse_lines("\n".join(lines), first))
        except LarkError as exc:
            template.skipped.append(Skipped(first, first + len(lines) - 1, str(exc).splitlines()[0]))
    return template


def parse_file(path: Path, *, lenient: bool = False) -> Template:
    return parse(path.read_text(encoding="utf-8-sig"), str(path), lenient=lenient)


# -- the tree


def _token(node: Any) -> Token | None:
    """The identifier or literal a ``string`` node holds."""
    if isinstance(node, Tree) and node.data == "string" and len(node.children) == 1:
        child = node.children[0]
        if isinstance(child, Token):
            return child
    return None


def _identifier(node: Any) -> Token | None:
    token = _token(node)
    return token if token is not None and token.type == "STRING" else None


def _unwrap(node: Any) -> Any:
    """``operator`` and ``function`` are wrappers around the rule that says what the node is."""
    while isinstance(node, Tree) and node.data in {"operator", "function"} and len(node.children) == 1:
        node = node.children[0]
    return node


def _line(node: Any, default: int = 0) -> int:
    if isinstance(node, Token):
        return node.line or default
    if isinstance(node, Tree):
        if not node.meta.empty:
            return node.meta.line
        for child in node.children:
            if (line := _line(child)) > 0:
                return line
    return default


def _key_text(key: Any) -> str:
    token = key.children[0]
    text = str(token)
    return text[1:-1] if text.startswith("'") else text


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    escapes = {"'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "$": "$"}
    out, chars = [], iter(body)
    for char in chars:
        out.append(escapes.get(next(chars, ""), "") if char == "\\" else char)
    return "".join(out)


def _split_interpolation(literal: str) -> tuple[list[str], list[tuple[int, str]]]:
    """A quoted string's literal parts and its ``${...}`` expressions (with their offsets in ``literal``)."""
    parts: list[str] = []
    holes: list[tuple[int, str]] = []
    i, current = 1, []
    while i < len(literal) - 1:
        char = literal[i]
        if char == "\\":
            current.append(literal[i : i + 2])
            i += 2
            continue
        if literal.startswith("${", i):
            end = _matching_brace(literal, i + 2)
            parts.append("".join(current))
            current = []
            holes.append((i + 2, literal[i + 2 : end]))
            i = end + 1
            continue
        current.append(char)
        i += 1
    parts.append("".join(current))
    return parts, holes


def _matching_brace(text: str, i: int) -> int:
    """The index of the ``}`` that closes an interpolation whose expression starts at ``i``."""
    depth = 1
    while i < len(text):
        char = text[i]
        if char == "'":
            i = _end_of_string(text, i)
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise BicepParseError(f"unclosed interpolation in {text}")


def _end_of_string(text: str, i: int) -> int:
    """The index of the quote closing the string literal that opens at ``i`` (which may interpolate)."""
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith("${", i):
            i = _matching_brace(text, i + 2) + 1
            continue
        if text[i] == "'":
            return i
        i += 1
    raise BicepParseError(f"unclosed string in {text}")


@functools.cache
def _parse_expression(expression: str, line: int) -> Any:
    try:
        elements = _parse_lines(f"var interpolated = {expression}", line)
    except LarkError:
        raise BicepParseError(f"line {line}: pycep cannot parse the interpolation ${{{expression}}}") from None
    return elements[0].children[2]


def _interpolated(token: Token) -> list[Any]:
    """The parsed expressions inside a quoted string's ``${...}`` (pycep keeps the string as one token)."""
    text = str(token)
    if token.type not in {"QUOTED_INTERPOLATION", "QUOTED_STRING"} or "${" not in text:
        return []
    _, holes = _split_interpolation(text)
    return [_parse_expression(expr, (token.line or 1) + text[:offset].count("\n")) for offset, expr in holes]


# -- symbols


@dataclass
class Symbol:
    kind: str  # resource | module | variable | parameter | output
    name: str
    element: Tree[Token]
    collection: bool = False
    existing: bool = False
    children: dict[str, Symbol] = field(default_factory=dict)
    # The resource a nested one is declared in: its body is where the nested one's expressions are read.
    enclosing: Symbol | None = field(default=None, repr=False, compare=False)

    @property
    def value(self) -> Any:
        """A variable's value, or the resource/module value (object, loop or condition)."""
        return self.element.children[-1]

    def body(self) -> Tree[Token] | None:
        """The object a resource or module is declared with (inside its loop or condition)."""
        node = self.value
        while isinstance(node, Tree) and node.data in {"loop", "deploy_condition"}:
            node = node.children[-1]
        return node if isinstance(node, Tree) and node.data == "object" else None

    def properties(self) -> Iterator[tuple[str, Tree[Token]]]:
        body = self.body()
        for pair in body.children if body is not None else []:
            if isinstance(pair, Tree) and pair.data == "pair":
                yield _key_text(pair.children[0]), pair


def _resource_symbol(element: Tree[Token], name: str, existing: bool, enclosing: Symbol | None = None) -> Symbol:
    value = element.children[-1]
    symbol = Symbol("resource", name, element, isinstance(value, Tree) and value.data == "loop", existing)
    symbol.enclosing = enclosing
    body = symbol.body()
    for node in body.children if body is not None else []:
        if isinstance(node, Tree) and node.data == "child_resource":
            child_name = str(node.children[0])
            symbol.children[child_name] = _resource_symbol(node, child_name, node.children[2] is not None, symbol)
    return symbol


def collect_symbols(elements: Iterable[Tree[Token]]) -> dict[str, Symbol]:
    symbols: dict[str, Symbol] = {}
    kinds = {"param": "parameter", "var": "variable", "output": "output", "module": "module"}
    for element in elements:
        if element.data == "resource":
            name = str(element.children[1])
            symbols[name] = _resource_symbol(element, name, element.children[3] is not None)
        elif element.data in kinds:
            name = str(element.children[1])
            value = element.children[-1]
            collection = isinstance(value, Tree) and value.data == "loop"
            symbols.setdefault(name, Symbol(kinds[element.data], name, element, collection))
    return symbols


# -- the check


@dataclass(frozen=True)
class _Step:
    kind: str  # member | index | call | child
    name: str = ""
    node: Any = None


@dataclass(frozen=True)
class _Finding:
    line: int
    reason: str
    function: bool = False  # a call of reference() or list*() itself (not through a variable)


class _Checker:
    def __init__(self, template: Template) -> None:
        self.template = template
        self.symbols = collect_symbols(template.elements)
        self.violations: list[Violation] = []
        self._variables: dict[str, str | None] = {}
        self._existing: dict[int, frozenset[str]] = {}
        self._folding: set[str] = set()
        # The resource whose body is being read: the resources nested in it and in those enclosing it are in
        # scope there by their bare names (a sibling's, a parent's); None at the top level.
        self._where: Symbol | None = None

    @contextlib.contextmanager
    def _inside(self, symbol: Symbol | None) -> Iterator[None]:
        outer, self._where = self._where, symbol
        try:
            yield
        finally:
            self._where = outer

    def _lookup(self, name: str) -> Symbol | None:
        scope = self._where
        while scope is not None:
            if name in scope.children:
                return scope.children[name]
            scope = scope.enclosing
        return self.symbols.get(name)

    # Declarations and their containers

    def run(self) -> list[Violation]:
        for element in self.template.elements:
            name = str(element.children[1]) if element.data not in {"scope", "metadata"} else ""
            # Each declaration as written (a name declared twice is the compiler's error; both are checked).
            if element.data == "resource":
                self._resource(_resource_symbol(element, name, element.children[3] is not None))
            elif element.data == "module":
                self._declared(Symbol("module", name, element), MODULE_START_PROPERTIES, f"module {name}")
            elif element.data == "var":
                self._variable(name, element.children[-1])
            elif element.data in {"output", "param"}:
                self._loops(element.children[-1], f"{element.data} {name}")
        return sorted(set(self.violations), key=lambda v: (v.line, v.code, v.reason))

    def _resource(self, symbol: Symbol) -> None:
        if symbol.existing:
            # The compiler does not check an existing resource's own body, only the resources nested in it.
            for child in symbol.children.values():
                self._resource(child)
            return
        with self._inside(symbol):
            self._declared(symbol, RESOURCE_START_PROPERTIES, f"resource {symbol.name}")
        for child in symbol.children.values():
            self._resource(child)

    def _declared(self, symbol: Symbol, start_properties: frozenset[str], what: str) -> None:
        node = symbol.value
        local: frozenset[str] = frozenset()
        while isinstance(node, Tree) and node.data in {"loop", "deploy_condition"}:
            if node.data == "loop":
                local = local | self._loop_names(node)
                self._report(self._loop_source(node), BCP_FOR, f"{what}: for", local)
                if node.children[1] is not None:
                    self._report(node.children[1], BCP_IF, f"{what}: if", local)
            else:
                self._report(node.children[0], BCP_IF, f"{what}: if", local)
            node = node.children[-1]
        for key, pair in symbol.properties():
            if key in start_properties:
                self._report(
                    pair.children[1], BCP_PROPERTY, f"{what}: {key}", local, scope_like=key in SCOPE_PROPERTIES
                )
        body = symbol.body()
        if body is not None:
            self._loops(body, what, local)

    def _variable(self, name: str, value: Any) -> None:
        if isinstance(value, Tree) and value.data == "loop":
            local = self._loop_names(value)
            self._report(self._loop_source(value), BCP_FOR, f"var {name}: for", local)
            if value.children[1] is not None:
                self._report(value.children[1], BCP_IF, f"var {name}: if", local)
            # A variable's for-body is checked whole (DeployTimeConstantValidator: ForSyntax in a variable).
            self._report(value.children[-1], BCP_VARIABLE_FOR_BODY, f"var {name}: for-body", local)
            self._loops(value.children[-1], f"var {name}", local)
            return
        self._loops(value, f"var {name}")

    def _loops(self, node: Any, what: str, local: frozenset[str] = frozenset()) -> None:
        """Every ``for`` source and loop ``if`` nested in ``node`` (a property loop, an output loop...)."""
        if not isinstance(node, Tree) or node.data == "child_resource":
            return
        if node.data == "loop":
            inner = local | self._loop_names(node)
            self._report(self._loop_source(node), BCP_FOR, f"{what}: for", inner)
            if node.children[1] is not None:
                self._report(node.children[1], BCP_IF, f"{what}: if", inner)
            self._loops(node.children[-1], what, inner)
            return
        if node.data == "filter":
            local = local | {str(node.children[1])}
        for child in node.children:
            self._loops(child, what, local)

    @staticmethod
    def _loop_names(loop: Any) -> frozenset[str]:
        head = loop.children[0]
        return frozenset(str(t) for t in head.children if isinstance(t, Token) and t.type == "STRING")

    @staticmethod
    def _loop_source(loop: Any) -> list[Any]:
        head = loop.children[0]
        return [child for child in head.children if isinstance(child, Tree)]

    def _report(self, node: Any, code: str, container: str, local: frozenset[str], *, scope_like: bool = False) -> None:
        nodes = node if isinstance(node, list) else [node]
        for each in nodes:
            for finding in self._find(each, local, scope_like):
                # reference() and list*() may not even be named in an if condition (NameBindingVisitor).
                named = BCP_FUNCTION_NOT_HERE if code == BCP_IF and finding.function else code
                self.violations.append(Violation(self.template.path, finding.line, named, container, finding.reason))

    # Expressions

    def _find(self, node: Any, local: frozenset[str], scope_like: bool = False) -> Iterator[_Finding]:
        """Each runtime value ``node`` uses; ``scope_like``: a whole resource may stand here (scope, parent)."""
        if node is None or isinstance(node, Token):
            return
        token = _token(node)
        if token is not None:
            if token.type == "STRING":
                yield from self._chain(token, [], local, scope_like)
            else:
                for expression in _interpolated(token):
                    yield from self._find(expression, local, scope_like)
            return
        node = _unwrap(node)
        if not isinstance(node, Tree):
            return
        if node.data in ACCESSORS:
            base, steps, others = self._flatten(node)
            base_token = _identifier(base)
            if base_token is not None:
                yield from self._chain(base_token, steps, local, scope_like)
            else:
                yield from self._find(base, local, scope_like)
            for step in steps:
                if step.kind in {"index", "call"}:
                    yield from self._find(step.node, local, scope_like)
            for other in others:
                yield from self._find(other, local, scope_like)
            return
        if node.data in RUNTIME_FUNCTIONS:
            yield _Finding(_line(node), f"{node.data.replace('_func', '*')}() (a runtime function)", function=True)
        if node.data == "key":
            for expression in _interpolated(node.children[0]) if isinstance(node.children[0], Token) else []:
                yield from self._find(expression, local, scope_like)
            return
        if node.data in {"loop", "filter"}:
            names = self._loop_names(node) if node.data == "loop" else frozenset({str(node.children[1])})
            local = local | names
        if node.data == "child_resource":
            return
        for child in node.children:
            yield from self._find(child, local, scope_like)

    def _flatten(self, node: Any) -> tuple[Any, list[_Step], list[Any]]:
        """``a.b[c].d()`` as (a, [.b, [c], .d()], expressions pycep hung on the chain by its lack of precedence)."""
        node = _unwrap(node)
        if not isinstance(node, Tree) or node.data not in ACCESSORS:
            return node, [], []
        left = node.children[0]
        base, steps, others = self._flatten(left)
        if node.data == "index_accessor":
            return base, [*steps, _Step("index", node=node.children[1])], others
        if node.data == "function_accessor":
            arguments = [c for c in node.children[2:] if isinstance(c, Tree)]
            return base, [*steps, _Step("call", str(node.children[1]), arguments)], others
        kind = "child" if node.data == "nested_resource_accessor" else "member"
        more, extra = self._members(node.children[1], kind)
        return base, [*steps, *more], [*others, *extra]

    def _members(self, node: Any, kind: str) -> tuple[list[_Step], list[Any]]:
        """What follows a dot (or ``::``): its leftmost name is the member; the rest continues the chain."""
        token = _identifier(node)
        if token is not None:
            return [_Step(kind, str(token))], []
        node = _unwrap(node)
        if not isinstance(node, Tree) or not node.children:
            return [], [node]
        if node.data in {"property_accessor", "nested_resource_accessor"}:
            first, extra = self._members(node.children[0], kind)
            rest, more = self._members(
                node.children[1], "child" if node.data == "nested_resource_accessor" else "member"
            )
            return [*first, *rest], [*extra, *more]
        if node.data == "index_accessor":
            first, extra = self._members(node.children[0], kind)
            return [*first, _Step("index", node=node.children[1])], extra
        if node.data == "function_accessor":
            first, extra = self._members(node.children[0], kind)
            arguments = [c for c in node.children[2:] if isinstance(c, Tree)]
            return [*first, _Step("call", str(node.children[1]), arguments)], extra
        # An operator pycep attached to the member (a.b == c parses as a.(b == c)): its first operand continues
        # the chain, the others are expressions of their own.
        first, extra = self._members(node.children[0], kind)
        return first, [*extra, *node.children[1:]]

    def _chain(self, base: Token, steps: list[_Step], local: frozenset[str], scope_like: bool) -> Iterator[_Finding]:
        name = str(base)
        line = base.line or 0
        symbol = None if name in local else self._lookup(name)
        if symbol is None or symbol.kind in {"parameter", "output"}:
            return
        if symbol.kind == "variable":
            reason = self._variable_reason(name)
            if reason is not None:
                yield _Finding(line, f"var {name} -> {reason}")
            return
        described = f"{symbol.kind} {name}"
        i = 0
        if symbol.collection:
            if not steps or steps[0].kind != "index":
                return  # the whole collection (length(foos), dependsOn): the compiler lets it be
            i = 1
        while i < len(steps) and steps[i].kind == "child":
            child = symbol.children.get(steps[i].name)
            if child is None:
                return
            symbol, described, i = child, f"{described}::{child.name}", i + 1
        if i == len(steps):
            if scope_like and not self._runtime_identifiers(symbol) - {"id"}:
                return  # a scope or parent may be any resource whose name, scope and parent are known
            yield _Finding(line, f"{described} as a whole (only {', '.join(sorted(self._readable(symbol)))} are known)")
            return
        step = steps[i]
        if step.kind == "call":
            yield _Finding(line, f"{described}.{step.name}() (a runtime function)", function=True)
            return
        names = {step.name} if step.kind == "member" else self._strings(step.node)
        if names is None:
            yield _Finding(line, f"{described}[...] (an index not known to be one of its start-time properties)")
            return
        for member in sorted(names - self._readable(symbol)):
            yield _Finding(line, f"{described}.{member} (a runtime value)")

    def _readable(self, symbol: Symbol) -> frozenset[str]:
        return READABLE[symbol.kind] - self._runtime_identifiers(symbol)

    def _runtime_identifiers(self, symbol: Symbol) -> frozenset[str]:
        """What of an existing resource is not known at the start: nothing, or, when the compiler must inline it
        (its name, scope or parent is a runtime value, or it is nested in, scoped to or a child of an inlined
        existing resource: InlineDependencyVisitor), its id and those of its identifiers that are runtime."""
        if symbol.kind != "resource" or not symbol.existing:
            return frozenset()
        key = id(symbol.element)
        if key not in self._existing:
            self._existing[key] = frozenset()  # a cycle is the compiler's error, not this one
            runtime, related = set(), [symbol.enclosing]
            with self._inside(symbol):
                for p, pair in symbol.properties():
                    if p not in IDENTIFIER_PROPERTIES:
                        continue
                    if self._any(pair.children[1], scope_like=p in SCOPE_PROPERTIES):
                        runtime.add(p)
                    if p in SCOPE_PROPERTIES:
                        related.append(self._whole_resource(pair.children[1]))
            inlined = runtime or any(self._runtime_identifiers(r) for r in related if r is not None)
            self._existing[key] = frozenset(runtime | {"id"}) if inlined else frozenset()
        return self._existing[key]

    def _whole_resource(self, node: Any) -> Symbol | None:
        """The resource ``node`` names as a whole (``r``, ``r::child``, ``rs[i]``), if it does."""
        base, steps, _ = self._flatten(node)
        token = _identifier(base)
        symbol = self._lookup(str(token)) if token is not None else None
        if symbol is None or symbol.kind != "resource":
            return None
        if symbol.collection and steps and steps[0].kind == "index":
            steps = steps[1:]
        for step in steps:
            if step.kind != "child" or step.name not in symbol.children:
                return None
            symbol = symbol.children[step.name]
        return symbol

    def _any(self, node: Any, *, scope_like: bool) -> bool:
        return next(iter(self._find(node, frozenset(), scope_like)), None) is not None

    def _variable_reason(self, name: str) -> str | None:
        """Why a variable is not known at the start (its whole declaration counts), or None."""
        if name not in self._variables:
            self._variables[name] = None  # cycles: the compiler reports those itself
            symbol = self.symbols[name]
            local = self._loop_names(symbol.value) if symbol.collection else frozenset()
            with self._inside(None):  # a variable is declared at the top level
                finding = next(iter(self._find(symbol.value, local)), None)
            self._variables[name] = finding.reason if finding else None
        return self._variables[name]

    # Folding an index to the strings it can be (foo['id'], foo[cond ? 'id' : 'name'])

    def _strings(self, node: Any) -> set[str] | None:
        token = _token(node)
        if token is not None:
            if token.type == "STRING":
                return self._variable_strings(str(token))
            parts, holes = _split_interpolation(str(token))
            if not holes:
                return {_unquote(str(token))}
            values = {_unquote(f"'{parts[0]}'")}
            for part, (_, expression) in zip(parts[1:], holes, strict=True):
                hole = self._strings(_parse_expression(expression, token.line or 1))
                if hole is None:
                    return None
                values = {v + h + _unquote(f"'{part}'") for v in values for h in hole}
            return values
        node = _unwrap(node)
        if isinstance(node, Tree) and node.data == "conditional":
            left, right = self._strings(node.children[1]), self._strings(node.children[2])
            return None if left is None or right is None else left | right
        if isinstance(node, Tree) and node.data in {"first", "last"}:
            return self._array_strings(node.children[0], 0 if node.data == "first" else -1)
        if isinstance(node, Tree) and node.data == "index_accessor":
            return self._array_strings(node.children[0], node.children[1])
        return None

    def _variable_strings(self, name: str) -> set[str] | None:
        symbol = self.symbols.get(name)
        if symbol is None or symbol.kind != "variable" or name in self._folding:
            return None
        self._folding.add(name)
        try:
            return self._strings(symbol.value)
        finally:
            self._folding.discard(name)

    def _array_strings(self, node: Any, index: Any) -> set[str] | None:
        """The strings an item of an array literal (or a variable holding one) can be."""
        identifier = _identifier(node)
        if identifier is not None:
            symbol = self.symbols.get(str(identifier))
            if symbol is None or symbol.kind != "variable":
                return None
            node = symbol.value
        node = _unwrap(node)
        if not isinstance(node, Tree) or node.data != "array":
            return None
        items = [c for c in node.children if isinstance(c, Tree)]
        # An array literal is a tuple to the compiler: a constant position gives that item, any other all of them.
        position = _unwrap(index)
        if isinstance(position, Tree) and position.data == "int":
            index = int(str(position.children[0]))
        if isinstance(index, int) and -len(items) <= index < len(items):
            items = [items[index]]
        values: set[str] = set()
        for item in items:
            strings = self._strings(item)
            if strings is None:
                return None
            values |= strings
        return values


def check(template: Template) -> list[Violation]:
    return _Checker(template).run()


def bicep_paths(paths: Iterable[Path]) -> list[Path]:
    return [file for path in paths for file in (sorted(path.rglob("*.bicep")) if path.is_dir() else [path])]


def check_paths(paths: Iterable[Path]) -> list[Violation]:
    return [violation for file in bicep_paths(paths) for violation in check(parse_file(file))]


# -- the proof: the compiler's own test files (a checkout of Azure/bicep, never copied here)

RULE = frozenset({BCP_PROPERTY, BCP_IF, BCP_FOR, BCP_VARIABLE_FOR_BODY})
# Errors on which the compiler stops before the rule applies: it reports only these on the line. In Azure/bicep's
# InvalidModules_LF, modules that reference themselves (BCP094) put reference()/listKeys() in their if condition,
# which InvalidResources_CRLF shows refused (BCP066) once nothing else is wrong.
STOPS_FIRST = frozenset({"BCP094"})
_DIAGNOSTIC = re.compile(r"//@\[\d+:\d+\) \[(BCP\d+) \((?:Error|Warning|Info)\)\]")


def compiler_diagnostics(annotated: str, source: str) -> dict[int, set[str]]:
    """Line of ``main.bicep`` -> the BCP codes the compiler reports there. ``main.diagnostics.bicep`` is
    ``main.bicep`` with a ``//@[start:end) [BCPnnn (Error)] message`` line after each line a diagnostic starts on
    (the compiler's baseline tests compare every diagnostic with it); anything else means the lines do not
    match ``main.bicep``, and the comparison would be meaningless."""
    found: dict[int, set[str]] = {}
    plain: list[str] = []
    for raw in annotated.lstrip("\ufeff").splitlines():
        if raw.startswith("//@["):
            match = _DIAGNOSTIC.match(raw)
            if match:
                found.setdefault(len(plain), set()).add(match.group(1))
        else:
            plain.append(raw)
    lines = source.lstrip("\ufeff").splitlines()
    if plain[: len(lines)] != lines or any(plain[len(lines) :]):
        raise ValueError("main.diagnostics.bicep without its diagnostic lines is not main.bicep")
    return found


@dataclass
class Comparison:
    """The check's findings on one of the compiler's cases, line by line, against the compiler's."""

    case: str
    agreed: list[int] = field(default_factory=list)  # lines where both report the same codes of the rule
    missing: dict[int, set[str]] = field(default_factory=dict)  # codes of the rule the check does not report
    extra: dict[int, set[str]] = field(default_factory=dict)  # codes the check reports, the compiler not
    preempted: dict[int, set[str]] = field(default_factory=dict)  # extra, where the compiler stopped first
    compiler: dict[int, set[str]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    error: str = ""  # the case could not be compared at all

    def in_skipped(self, line: int) -> bool:
        return any(s.first_line <= line <= s.last_line for s in self.skipped)

    def summary(self) -> str:
        if self.error:
            return f"{self.case}: not compared: {self.error}"
        rule = sum(1 for codes in self.compiler.values() if codes & RULE)
        lines = f"{len(self.compiler)} line(s) with diagnostics, {rule} of the rule"
        errors = f"compiler: {lines if self.compiler else 'no diagnostic'}"
        skipped = sum(s.last_line - s.first_line + 1 for s in self.skipped)
        text = f"{self.case}: agreed {len(self.agreed)}, missing {len(self.missing)}, extra {len(self.extra)}"
        if self.preempted:
            text += f", preempted {len(self.preempted)}"
        return f"{text} ({errors}; {len(self.skipped)} declaration(s), {skipped} line(s) pycep cannot parse)"

    def details(self) -> Iterator[str]:
        for line, codes in sorted(self.missing.items()):
            hidden = " (in a declaration pycep cannot parse)" if self.in_skipped(line) else ""
            yield f"  missing {self.case}:{line}: the compiler reports {', '.join(sorted(codes))}{hidden}"
        for line, codes in sorted(self.extra.items()):
            theirs = ", ".join(sorted(self.compiler.get(line, ()))) or "nothing"
            yield f"  extra {self.case}:{line}: the check reports {', '.join(sorted(codes))}, the compiler {theirs}"
        for line, codes in sorted(self.preempted.items()):
            theirs = ", ".join(sorted(self.compiler[line]))
            yield f"  preempted {self.case}:{line}: the check reports {', '.join(sorted(codes))}, the compiler {theirs}"


def compare(case: str, template: Template, compiler: dict[int, set[str]]) -> Comparison:
    ours: dict[int, set[str]] = {}
    for violation in check(template):
        ours.setdefault(violation.line, set()).add(violation.code)
    result = Comparison(case, compiler=compiler, skipped=template.skipped)
    for line in sorted(set(ours) | {n for n, codes in compiler.items() if codes & RULE}):
        theirs, mine = compiler.get(line, set()), ours.get(line, set())
        if theirs & RULE - mine:
            result.missing[line] = theirs & RULE - mine
        if mine - theirs:
            (result.preempted if theirs & STOPS_FIRST else result.extra)[line] = mine - theirs
        if line not in result.missing and line not in result.extra and line not in result.preempted:
            result.agreed.append(line)
    return result


def compare_case(directory: Path) -> Comparison:
    """One baseline case: its ``main.bicep``, parsed leniently (the compiler's files are full of errors pycep
    does not parse), against its ``main.diagnostics.bicep``."""
    try:
        source = (directory / "main.bicep").read_text(encoding="utf-8-sig")
        annotated = (directory / "main.diagnostics.bicep").read_text(encoding="utf-8-sig")
        compiler = compiler_diagnostics(annotated, source)
        return compare(directory.name, parse(source, str(directory / "main.bicep"), lenient=True), compiler)
    except (OSError, ValueError) as exc:  # BicepParseError is a ValueError
        return Comparison(directory.name, error=str(exc))


def baseline_cases(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if all((p / f).is_file() for f in ("main.bicep", "main.diagnostics.bicep")))


def compare_baselines(root: Path, timeout_s: float = 60.0) -> list[Comparison]:
    """Every case under ``root`` (``src/Bicep.Core.Samples/Files/baselines`` of an Azure/bicep checkout). Each
    runs in a child process: pycep's multi-line string rule can backtrack without end (Metadata_CRLF), and a
    Python regex cannot be interrupted, so a case that takes longer than ``timeout_s`` is reported, not waited
    for."""
    _parser()  # built once, inherited by each forked child
    context = multiprocessing.get_context("fork")
    results: list[Comparison] = []
    for directory in baseline_cases(root):
        pool = context.Pool(1)
        try:
            results.append(pool.apply_async(compare_case, (directory,)).get(timeout_s))
        except multiprocessing.TimeoutError:
            results.append(Comparison(directory.name, error=f"pycep did not return within {timeout_s:g} s"))
        finally:
            pool.terminate()
            pool.join()
    return results


def _report_baselines(root: Path, timeout_s: float) -> int:
    if not baseline_cases(root):
        print(f"{root}: no case (a folder with main.bicep and main.diagnostics.bicep)", file=sys.stderr)
        return 2
    results = compare_baselines(root, timeout_s)
    for result in results:
        print(result.summary())
        for detail in result.details():
            print(detail)
    compared = [r for r in results if not r.error]
    disagree = [r.case for r in compared if r.missing or r.extra]
    print(
        f"{len(compared)} of {len(results)} case(s) compared: agreed on {sum(len(r.agreed) for r in compared)} "
        f"line(s); missing {sum(len(r.missing) for r in compared)}, extra {sum(len(r.extra) for r in compared)}, "
        f"preempted {sum(len(r.preempted) for r in compared)}; "
        f"{len(disagree)} case(s) disagree{': ' + ', '.join(disagree) if disagree else ''}"
    )
    return 1 if disagree else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.infra.deploy_time_constants",
        description="Report values the Bicep compiler needs at the start of a deployment that depend on runtime "
        "values (BCP120/BCP177/BCP178/BCP182).",
    )
    parser.add_argument("paths", nargs="*", type=Path, help=".bicep files or folders (default: infra/)")
    parser.add_argument(
        "--baselines",
        type=Path,
        metavar="DIR",
        help="instead, compare with the compiler's expected diagnostics: DIR is src/Bicep.Core.Samples/Files/"
        "baselines of an Azure/bicep checkout",
    )
    parser.add_argument(
        "--lenient",
        action="store_true",
        help="check each declaration pycep can parse and list the others (default: a file pycep refuses fails)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per baseline case (default 60)")
    args = parser.parse_args(argv)
    if args.baselines is not None:
        return _report_baselines(args.baselines, args.timeout)
    root = Path(__file__).resolve().parents[2]
    files = bicep_paths(args.paths or [root / "infra"])
    violations: list[Violation] = []
    checked = skipped = 0
    for file in files:
        try:
            template = parse_file(file, lenient=args.lenient)
        except BicepParseError as exc:
            print(exc, file=sys.stderr)
            return 2
        for part in template.skipped:
            print(f"{file}:{part.first_line}-{part.last_line}: not checked, pycep cannot parse it: {part.error}")
        checked, skipped = checked + len(template.elements), skipped + len(template.skipped)
        violations.extend(check(template))
    for violation in violations:
        print(violation)
    declarations = f"{checked} declaration(s) checked" + (f", {skipped} not" if args.lenient else "")
    found = f"{len(violations)} value(s) the compiler needs at the start depend on runtime values"
    print(f"{len(files)} file(s), {declarations}: {found}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
