"""The README is a map, and a map must be true: every row of its "where to look" table names a file that exists
and a function or class (``Class.method`` too) that the file defines, and every relative link in the README and
in ``docs/*.md`` reaches a file that exists (and, with ``#anchor``, a heading of that page)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

# Pages other branches add (issue 20), linked from the README before they land. An entry whose page exists
# fails test_pages_still_to_come_have_not_come, so the list empties itself at the merge: then nothing is skipped.
PAGES_STILL_TO_COME: frozenset[str] = frozenset({"docs/cli.md"})

_ROW = re.compile(r"^\|\s*(?P<what>[^|]+?)\s*\|\s*`(?P<file>[^`]+)`\s*\|\s*`(?P<name>[^`]+)`\s*\|\s*$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def where_to_look_rows(text: str) -> list[tuple[str, str, str]]:
    """``(behaviour, file, name)`` for each row of the table under the README's "## Where to look"."""
    section = text.split("\n## Where to look\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        match = _ROW.match(line)
        if match:
            rows.append((match["what"], match["file"], match["name"]))
    return rows


def defines(source: str, dotted: str) -> bool:
    """Whether the module defines ``name`` or ``Class.name`` at top level (functions, async ones and classes)."""
    scope: list[ast.stmt] = ast.parse(source).body
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        found = next(
            (
                node
                for node in scope
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == part
            ),
            None,
        )
        if found is None:
            return False
        if depth < len(parts) - 1:
            if not isinstance(found, ast.ClassDef):
                return False
            scope = found.body
    return True


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {_anchor(line.lstrip("#")) for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("#")}


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)  # code blocks hold no links
    return [m["target"] for m in _LINK.finditer(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", m["target"], flags=re.I)]


def test_the_table_is_there_and_says_enough() -> None:
    rows = where_to_look_rows(README.read_text(encoding="utf-8"))
    behaviours = " | ".join(what for what, _, _ in rows)
    for asked in ("idle rule", "canary verdict", "status blob", "LoRA merge", "blob routing", "endpoint name"):
        assert asked in behaviours
    for asked in ("event routing", "state change", "approv", "supersede", "quota check", "smoke test"):
        assert asked in behaviours
    assert len(rows) >= 20


@pytest.mark.parametrize(
    ("what", "file", "name"), where_to_look_rows(README.read_text(encoding="utf-8")), ids=lambda v: str(v)[:40]
)
def test_each_row_names_a_file_and_a_function_it_defines(what: str, file: str, name: str) -> None:
    path = ROOT / file
    assert path.is_file(), f"{what}: {file} does not exist"
    assert defines(path.read_text(encoding="utf-8"), name), f"{what}: {file} does not define {name}"


def test_the_checker_itself_tells_a_missing_name() -> None:
    source = "class A:\n    def b(self): ...\n\nasync def c(): ...\n"
    assert defines(source, "A") and defines(source, "A.b") and defines(source, "c")
    assert not defines(source, "b") and not defines(source, "A.c") and not defines(source, "c.x")
    row = "| a thing | `x/y.py` | `Thing.go` |"
    assert where_to_look_rows(f"\n## Where to look\n\n{row}\n\n## Next\n") == [("a thing", "x/y.py", "Thing.go")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        relative = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(resolved)
        if relative in PAGES_STILL_TO_COME:
            continue
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_pages_still_to_come_have_not_come() -> None:
    arrived = sorted(page for page in PAGES_STILL_TO_COME if (ROOT / page).exists())
    assert not arrived, f"remove {arrived} from PAGES_STILL_TO_COME: their links are checked like any other"


def test_the_readme_stays_a_map() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250
