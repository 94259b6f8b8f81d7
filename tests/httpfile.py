"""A reader of ``.http`` files as VS Code's REST Client writes them, enough for the repository's ``test.http``:
``@name = value`` file variables, requests separated by ``###``, ``#`` and ``//`` comment lines, a request line
(``METHOD URL [HTTP/1.1]``), headers, a blank line, the body; ``{{name}}`` and ``{{$processEnv NAME}}``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

_VARIABLE = re.compile(r"^@(?P<name>[A-Za-z_][\w-]*)\s*=\s*(?P<value>.*?)\s*$")
_REQUEST_LINE = re.compile(r"^(?P<method>GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)\s+(?P<url>.+?)(\s+HTTP/\d(\.\d)?)?$")
_HEADER = re.compile(r"^(?P<name>[A-Za-z0-9-]+):\s*(?P<value>.*)$")
_REFERENCE = re.compile(r"\{\{\s*(?P<ref>[^}]+?)\s*\}\}")


@dataclass(frozen=True)
class HttpRequest:
    title: str  # the ``###`` line's text
    method: str
    url: str
    headers: dict[str, str]  # names in lower case
    body: str

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.url).query)

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


def _comment(line: str) -> bool:
    return line.lstrip().startswith(("#", "//"))


def parse(
    text: str,
    *,
    env: Callable[[str], str] = lambda name: f"<{name}>",
    overrides: Mapping[str, str] | None = None,
) -> list[HttpRequest]:
    """The requests of an ``.http`` file with every reference resolved (``overrides`` replace file variables)."""
    blocks: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines():
        if line.startswith("###"):
            blocks.append((line.lstrip("#").strip(), []))
        else:
            blocks[-1][1].append(line)
    # A block's leading lines are blanks, comments and file variables (file-wide), then the request line.
    variables: dict[str, str] = {}
    leads: list[tuple[str, list[str]]] = []
    for title, lines in blocks:
        rest = list(lines)
        while rest and (not rest[0].strip() or _comment(rest[0]) or _VARIABLE.match(rest[0])):
            match = _VARIABLE.match(rest.pop(0))
            if match:
                variables[match["name"]] = match["value"]
        leads.append((title, rest))
    variables.update(overrides or {})

    def resolve(value: str, depth: int = 0) -> str:
        if depth > 10:
            raise ValueError(f"variables refer to each other in a loop: {value}")

        def one(match: re.Match[str]) -> str:
            ref = match["ref"]
            if ref.startswith("$processEnv "):
                return env(ref.split(None, 1)[1])
            if ref not in variables:
                raise ValueError(f"undefined variable {{{{{ref}}}}}")
            return resolve(variables[ref], depth + 1)

        return _REFERENCE.sub(one, value)

    requests = []
    for title, body_lines in leads:
        if not body_lines:
            continue
        request_line = _REQUEST_LINE.match(body_lines.pop(0).strip())
        if request_line is None:
            raise ValueError(f"request {title!r}: no 'METHOD URL' line")
        headers: dict[str, str] = {}
        while body_lines and body_lines[0].strip():
            header = _HEADER.match(body_lines.pop(0))
            if header is None:
                raise ValueError(f"request {title!r}: a header line that is not 'Name: value'")
            headers[header["name"].lower()] = resolve(header["value"])
        body = "\n".join(body_lines).strip()
        requests.append(
            HttpRequest(title, request_line["method"], resolve(request_line["url"]), headers, resolve(body))
        )
    return requests


def read(
    path: Path,
    *,
    env: Callable[[str], str] = lambda name: f"<{name}>",
    overrides: Mapping[str, str] | None = None,
) -> list[HttpRequest]:
    return parse(path.read_text(encoding="utf-8"), env=env, overrides=overrides)
