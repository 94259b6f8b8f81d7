"""The offline deploy-time-constant check (tests/infra/deploy_time_constants.py): infra/ passes it; the template
main had before issue 18 fails it where the compiler would; on this project's own cases (fixtures/deploy-time/,
each mirroring one the compiler's tests exercise) it reports exactly the lines marked ``// expect BCPnnn`` and
nothing else; and the comparison with the compiler's own baselines (run by hand on an Azure/bicep checkout, or
here when AUTOPILOT_BICEP_BASELINES names one) classifies lines as it says."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.infra import deploy_time_constants as dtc
from tests.infra.infra_files import INFRA

FIXTURES = Path(__file__).with_name("fixtures")
CASES = FIXTURES / "deploy-time"
CASE_FILES = sorted(CASES.glob("*.bicep"))
BASELINES_VARIABLE = "AUTOPILOT_BICEP_BASELINES"
_MARK = re.compile(r"//\s*expect\s+(BCP\d+(?:[\s,]+BCP\d+)*)\s*$")


def marked(path: Path) -> set[tuple[int, str]]:
    """(line, code) of each ``// expect BCPnnn`` mark: what the compiler reports on that line."""
    marks: set[tuple[int, str]] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if match := _MARK.search(line):
            marks |= {(number, code) for code in re.findall(r"BCP\d+", match.group(1))}
    return marks


# -- this repository's templates


def test_infra_uses_only_start_time_values_where_the_compiler_needs_them() -> None:
    assert dtc.check_paths([INFRA]) == []


def test_the_template_main_had_is_refused_where_the_compiler_refuses_it() -> None:
    """infra/app/resources.bicep at 5e22f0a (before issue 18): module outputs in two role assignment names, an
    identity key and the source of the settings loop (Azure/bicep#7328, #12543)."""
    violations = dtc.check(dtc.parse_file(FIXTURES / "before-issue-18" / "resources.bicep"))
    found = [(v.line, v.code, v.container) for v in violations]
    assert found == [
        (159, "BCP120", "resource functionApp: identity"),
        (169, "BCP178", "resource functionApp: for"),
        (196, "BCP120", "resource storageRoles: name"),
        (209, "BCP120", "resource appInsightsRoles: name"),
    ]
    assert violations[1].reason == "var appSettings -> module identity.outputs (a runtime value)"


def test_the_command_line_reports_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert dtc.main([str(FIXTURES / "before-issue-18" / "resources.bicep")]) == 1
    out = capsys.readouterr().out
    assert "resources.bicep:196: BCP120 resource storageRoles: name depends on module identity.outputs" in out
    assert dtc.main([str(INFRA)]) == 0


def test_a_file_pycep_cannot_parse_fails_strictly_and_is_trimmed_leniently(capsys: pytest.CaptureFixture[str]) -> None:
    text = "param a string\nfunc f() string => 'x'\nresource r 'A/b@1' = {\n  name: reference(a).name\n}\n"
    with pytest.raises(dtc.BicepParseError, match="pycep cannot parse it"):
        dtc.parse(text, "t.bicep")
    template = dtc.parse(text, "t.bicep", lenient=True)
    assert [(s.first_line, s.last_line) for s in template.skipped] == [(2, 2)]
    assert [(v.line, v.code) for v in dtc.check(template)] == [(4, "BCP120")]


def test_the_command_line_checks_leniently_and_says_what_it_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.bicep"
    path.write_text("param a string\nfunc f() string => 'x'\nresource r 'A/b@1' = {\n  name: reference(a).name\n}\n")
    assert dtc.main([str(path)]) == 2
    assert dtc.main(["--lenient", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:2-2: not checked, pycep cannot parse it" in out
    assert "1 file(s), 2 declaration(s) checked, 1 not: 1 value(s)" in out


@pytest.mark.parametrize(
    ("bicep", "expected"),
    [
        # pycep reads `a.b ?? c` as `a.(b ?? c)`: the member is still `outputs`.
        ("module m 'm.bicep' = {\n  name: 'm'\n}\nresource r 'A/b@1' = {\n  name: m.outputs.?x ?? 'y'\n}\n", [5]),
        # A name that is a loop variable is not the resource of that name.
        ("resource s 'A/b@1' = {\n  name: 's'\n}\nvar v = [for s in ['a']: {\n  x: s\n}]\n", []),
        # A name declared twice is the compiler's error; each declaration is checked as written.
        (
            "module m 'm.bicep' = {\n  name: 'm'\n}\nresource r 'A/b@1' = {\n  name: 'r'\n}\n"
            "resource r 'A/b@1' = {\n  name: m.outputs.n\n}\n",
            [8],
        ),
        # An existing resource scoped to one inlined for its enclosing resource's runtime name is inlined too: its
        # id is a runtime value (InlineDependencyVisitor: scopedToInlinedResource), its known name is not.
        (
            "module m 'm.bicep' = {\n  name: 'm'\n}\nresource n 'A/b@1' existing = {\n  name: m.outputs.n\n"
            "  resource k 'c' existing = {\n    name: 'k'\n  }\n}\nresource e 'X/y@1' existing = {\n"
            "  name: 'e'\n  scope: n::k\n}\nresource r 'A/d@1' = {\n  name: guid(e.id, e.name)\n}\n",
            [15],
        ),
    ],
    ids=["precedence", "loop-variable-shadows", "declared-twice", "existing-scoped-to-inlined"],
)
def test_the_rule_on_small_templates(bicep: str, expected: list[int]) -> None:
    assert [v.line for v in dtc.check(dtc.parse(bicep))] == expected


# -- this project's cases, each mirroring one of the compiler's tests


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.name)
def test_the_check_reports_exactly_the_marked_lines(path: Path) -> None:
    """Both ways: every marked (line, code) is reported, and nothing is reported on an unmarked line."""
    violations = dtc.check(dtc.parse_file(path))  # strict: a declaration pycep skipped would hide a case
    found = {(v.line, v.code) for v in violations}
    expected = marked(path)
    missing = sorted(expected - found)
    extra = [str(v) for v in violations if (v.line, v.code) not in expected]
    assert not missing and not extra, f"missing (line, code): {missing}; extra: {extra}"


def test_the_cases_cover_each_code_and_cite_what_they_mirror() -> None:
    assert {p.name for p in CASE_FILES} >= {"module.bicep", "valid.bicep", "resource-names.bicep"}
    codes = {code for path in CASE_FILES for _, code in marked(path)}
    assert codes == {"BCP066", "BCP120", "BCP177", "BCP178", "BCP182"}
    for path in CASE_FILES:
        if path.name == "module.bicep":
            continue  # what the others deploy
        text = path.read_text(encoding="utf-8")
        assert "Azure/bicep" in text and "9beb0fee60ca53458f41492b699af440367b240b" in text, path.name
        lines = text.splitlines()
        cases = [i for i, line in enumerate(lines) if line.startswith("// Case")]
        assert cases or path.name == "valid.bicep", f"{path.name} has no case"
        for i in cases:
            cited = "\n".join(lines[i : i + 8])
            assert re.search(r"src/Bicep\.Core[\w.]*/\S+\.(bicep|cs)", cited), f"{path.name}:{i + 1} cites nothing"
    assert len(marked(CASES / "valid.bicep")) == 0


# -- the comparison with the compiler's baselines


SOURCE = "module m 'm.bicep' = {\n  name: 'm'\n}\nresource a 'A/b@1' = {\n  name: m.outputs.x\n}\n"


def annotated(diagnostics: dict[int, list[str]]) -> str:
    """SOURCE as the compiler's main.diagnostics.bicep would have it, with these codes after these lines."""
    out = []
    for number, line in enumerate(SOURCE.splitlines(), start=1):
        out.append(line)
        out.extend(f"//@[2:8) [{code} (Error)] message" for code in diagnostics.get(number, []))
    return "\n".join(out) + "\n"


def test_the_compilers_diagnostics_are_read_by_line_of_main_bicep() -> None:
    text = annotated({5: ["BCP120", "BCP036"], 2: ["BCP035"]}).replace("BCP036 (Error)", "BCP036 (Warning)")
    text = text.replace("  name: 'm'\n", "  name: 'm'\n//@[0:1) [no-unused-vars (Warning)] linter\n")
    assert dtc.compiler_diagnostics(text, SOURCE) == {2: {"BCP035"}, 5: {"BCP120", "BCP036"}}
    with pytest.raises(ValueError, match=r"is not main\.bicep"):
        dtc.compiler_diagnostics(text.replace("name: m.outputs.x", "name: 'other'"), SOURCE)


@pytest.mark.parametrize(
    ("diagnostics", "agreed", "missing", "extra", "preempted"),
    [
        ({5: ["BCP120"]}, [5], {}, {}, {}),
        ({5: ["BCP177"]}, [], {5: {"BCP177"}}, {5: {"BCP120"}}, {}),
        ({}, [], {}, {5: {"BCP120"}}, {}),
        ({5: ["BCP094"]}, [], {}, {}, {5: {"BCP120"}}),
        ({2: ["BCP120"], 5: ["BCP120"]}, [5], {2: {"BCP120"}}, {}, {}),
    ],
    ids=["agreed", "other-code", "compiler-accepts", "compiler-stops-first", "missed-line"],
)
def test_the_comparison_classifies_each_line(
    diagnostics: dict[int, list[str]],
    agreed: list[int],
    missing: dict[int, set[str]],
    extra: dict[int, set[str]],
    preempted: dict[int, set[str]],
) -> None:
    compiler = dtc.compiler_diagnostics(annotated(diagnostics), SOURCE)
    result = dtc.compare("Case_LF", dtc.parse(SOURCE), compiler)
    assert (result.agreed, result.missing, result.extra, result.preempted) == (agreed, missing, extra, preempted)


def write_case(root: Path, name: str, diagnostics: dict[int, list[str]]) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "main.bicep").write_text(SOURCE, encoding="utf-8")
    (root / name / "main.diagnostics.bicep").write_text(annotated(diagnostics), encoding="utf-8")


def test_the_command_line_compares_each_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_case(tmp_path, "Agrees_LF", {5: ["BCP120"]})
    assert dtc.main(["--baselines", str(tmp_path)]) == 0
    write_case(tmp_path, "Disagrees_LF", {})
    (tmp_path / "NoDiagnostics").mkdir()  # not a case: no main.diagnostics.bicep
    assert dtc.main(["--baselines", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-4:] == [
        "Agrees_LF: agreed 1, missing 0, extra 0 (compiler: 1 line(s) with diagnostics, 1 of the rule; "
        "0 declaration(s), 0 line(s) pycep cannot parse)",
        "Disagrees_LF: agreed 0, missing 0, extra 1 (compiler: no diagnostic; "
        "0 declaration(s), 0 line(s) pycep cannot parse)",
        "  extra Disagrees_LF:5: the check reports BCP120, the compiler nothing",
        "2 of 2 case(s) compared: agreed on 1 line(s); missing 0, extra 1, preempted 0; "
        "1 case(s) disagree: Disagrees_LF",
    ]
    assert dtc.main(["--baselines", str(tmp_path / "NoDiagnostics")]) == 2


def _never_returns(directory: Path) -> dtc.Comparison:
    time.sleep(3600)
    raise AssertionError("unreachable")


def test_a_case_pycep_never_finishes_is_reported_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pycep's multi-line string rule can backtrack without end (Azure/bicep's Metadata_CRLF); the child process
    comparing the case is ended after the timeout."""
    write_case(tmp_path, "Hangs_CRLF", {5: ["BCP120"]})
    monkeypatch.setattr(dtc, "compare_case", _never_returns)
    [result] = dtc.compare_baselines(tmp_path, timeout_s=2)
    assert result.error == "pycep did not return within 2 s"
    assert result.summary() == "Hangs_CRLF: not compared: pycep did not return within 2 s"


@pytest.mark.skipif(
    not os.environ.get(BASELINES_VARIABLE),
    reason=f"{BASELINES_VARIABLE} names no checkout of Azure/bicep's src/Bicep.Core.Samples/Files/baselines "
    "(docs/infrastructure.md, 'How the check was proven')",
)
def test_the_check_agrees_with_the_compilers_baselines() -> None:
    results = dtc.compare_baselines(Path(os.environ[BASELINES_VARIABLE]))
    compared = {r.case: r for r in results if not r.error}
    assert {"InvalidResources_CRLF", "InvalidModules_LF", "InvalidVariables_LF", "InvalidRuntimeValueUsages_LF"} <= set(
        compared
    )
    assert not [line for r in compared.values() for line in r.details() if not line.startswith("  preempted")]
    assert sum(len(r.agreed) for r in compared.values()) >= 150
