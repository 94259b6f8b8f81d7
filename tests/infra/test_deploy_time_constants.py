"""The offline deploy-time-constant check (tests/infra/deploy_time_constants.py): infra/ passes it, the template
main had before issue 18 fails it where the compiler would, and on the compiler's own test files
(tests/infra/fixtures/bicep-baselines, SOURCE.md) it reports exactly the BCP120/BCP177/BCP178/BCP182 lines the
compiler's expected diagnostics list, and nothing on files the compiler accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra import deploy_time_constants as dtc
from tests.infra.infra_files import INFRA, ROOT

FIXTURES = Path(__file__).with_name("fixtures")
BASELINES = FIXTURES / "bicep-baselines"
INVALID = sorted(p.name for p in BASELINES.iterdir() if p.name.startswith("Invalid"))
VALID = sorted(p.name for p in BASELINES.iterdir() if not p.name.startswith("Invalid"))
RULE = {"BCP120", "BCP177", "BCP178", "BCP182"}
# Where the compiler stops before the rule applies: only this error is reported on those lines. In
# InvalidModules_LF a module that references itself (BCP094) has reference()/listKeys() in its if condition,
# which InvalidResources_CRLF shows refused (BCP066) once nothing else is wrong.
STOPS_FIRST = {"BCP094"}


def compiler_diagnostics(case: str) -> dict[int, set[str]]:
    """Line of main.bicep -> the codes the compiler reports there: main.diagnostics.bicep is main.bicep with a
    ``//@[start:end) [BCPnnn (Error)] ...`` line after each line a diagnostic starts on."""
    found: dict[int, set[str]] = {}
    line = 0
    text = (BASELINES / case / "main.diagnostics.bicep").read_text(encoding="utf-8-sig")
    for raw in text.splitlines():
        match = re.match(r"//@\[\d+:\d+\) \[(BCP\d+) ", raw)
        if match:
            found.setdefault(line, set()).add(match.group(1))
        else:
            line += 1
    return found


def reported(template: dtc.Template) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for violation in dtc.check(template):
        found.setdefault(violation.line, set()).add(violation.code)
    return found


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


def test_a_file_pycep_cannot_parse_fails_strictly_and_is_trimmed_leniently() -> None:
    text = "param a string\nfunc f() string => 'x'\nresource r 'A/b@1' = {\n  name: reference(a).name\n}\n"
    with pytest.raises(dtc.BicepParseError, match="pycep cannot parse it"):
        dtc.parse(text, "t.bicep")
    template = dtc.parse(text, "t.bicep", lenient=True)
    assert [(s.first_line, s.last_line) for s in template.skipped] == [(2, 2)]
    assert [(v.line, v.code) for v in dtc.check(template)] == [(4, "BCP120")]


@pytest.mark.parametrize(
    ("bicep", "expected"),
    [
        # pycep reads `a.b ?? c` as `a.(b ?? c)`: the member is still `outputs`.
        ("module m 'm.bicep' = {\n  name: 'm'\n}\nresource r 'A/b@1' = {\n  name: m.outputs.?x ?? 'y'\n}\n", [5]),
        # Inside an interpolation, and in an identity map key (a whole `identity` must be known at the start).
        (
            "module m 'm.bicep' = {\n  name: 'm'\n}\nresource r 'A/b@1' = {\n  name: 'r'\n"
            "  identity: {\n    userAssignedIdentities: {\n      '${m.outputs.id}': {}\n    }\n  }\n}\n",
            [8],
        ),
        # A whole resource may stand in scope; its id and name anywhere; its properties nowhere.
        (
            "resource s 'A/b@1' = {\n  name: 's'\n}\nresource r 'A/b/c@1' = {\n  scope: s\n"
            "  name: guid(s.id, s.name)\n  location: s.location\n}\n",
            [7],
        ),
        # An existing resource named by a module output has a runtime id.
        (
            "module m 'm.bicep' = {\n  name: 'm'\n}\nresource e 'A/b@1' existing = {\n  name: m.outputs.n\n}\n"
            "resource r 'A/b/c@1' = {\n  name: guid(e.id)\n}\n",
            [8],
        ),
        # Through two variables into a module's if condition; a parameter is known at the start.
        (
            "param p string\nresource s 'A/b@1' = {\n  name: p\n}\nvar a = s.properties\nvar b = a\n"
            "module m 'm.bicep' = if (!empty(b)) {\n  name: p\n}\n",
            [7],
        ),
    ],
    ids=["precedence", "identity-key", "scope-and-id", "existing-runtime-name", "through-variables"],
)
def test_the_rule_on_small_templates(bicep: str, expected: list[int]) -> None:
    assert [v.line for v in dtc.check(dtc.parse(bicep))] == expected


# -- the compiler's own test files


def test_the_fixtures_are_the_compilers_files_as_copied() -> None:
    """main.diagnostics.bicep without its diagnostic lines is main.bicep (so its line numbers are main.bicep's)."""
    for case in INVALID:
        source = (BASELINES / case / "main.bicep").read_text(encoding="utf-8-sig").splitlines()
        annotated = (BASELINES / case / "main.diagnostics.bicep").read_text(encoding="utf-8-sig").splitlines()
        plain = [line for line in annotated if not line.startswith("//@[")]
        assert plain[: len(source)] == source and not any(plain[len(source) :]), case


@pytest.mark.parametrize("case", INVALID)
def test_the_check_reports_the_compilers_deploy_time_errors(case: str) -> None:
    template = dtc.parse_file(BASELINES / case / "main.bicep", lenient=True)
    compiler = compiler_diagnostics(case)
    ours = reported(template)
    expected = {line for line, codes in compiler.items() if codes & RULE}
    assert expected, f"{case} has no case of the rule"
    # No expected case sits in a declaration pycep could not parse (so trimming hid none of them).
    assert not [line for line in expected if any(s.first_line <= line <= s.last_line for s in template.skipped)]
    for line in expected:
        assert ours.get(line, set()) & RULE == compiler[line] & RULE, f"{case}:{line}"
    for line, codes in ours.items():
        refused = compiler.get(line, set())
        assert codes <= refused or refused & STOPS_FIRST, f"{case}:{line}: we say {codes}, the compiler {refused}"


@pytest.mark.parametrize("case", VALID)
def test_the_check_reports_nothing_on_files_the_compiler_accepts(case: str) -> None:
    template = dtc.parse_file(BASELINES / case / "main.bicep", lenient=True)
    assert len(template.elements) >= 5, f"pycep parsed too little of {case} for this to mean anything"
    assert dtc.check(template) == []


def test_every_copied_file_says_where_it_comes_from() -> None:
    source = (FIXTURES / "SOURCE.md").read_text(encoding="utf-8")
    assert len(INVALID) == 4 and len(VALID) >= 8
    for case in INVALID + VALID:
        assert f"`{case}`" in source, f"{case} is not in fixtures/SOURCE.md"
    assert "9beb0fee60ca53458f41492b699af440367b240b" in source and ROOT in FIXTURES.parents
