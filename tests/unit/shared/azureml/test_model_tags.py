"""The foundation model's tags are parsed safely: good values come through, hostile ones are clear errors."""

from __future__ import annotations

import ast
import time

import pytest

from shared.config.model_tags import (
    FINETUNE_ALLOW_LIST,
    MAX_TAG_CHARS,
    MODEL_DEFAULTS,
    parse_literal,
    parse_model_defaults,
    parse_sku_list,
)
from shared.exceptions import ModelTagError
from tests.unit.shared.azureml.support import fixture_model_tags


def issue(exc: pytest.ExceptionInfo[ModelTagError]) -> tuple[str, str]:
    [only] = exc.value.issues
    return only.path, only.message


def test_the_fixture_tags_parse() -> None:
    tags = fixture_model_tags()
    allow = parse_sku_list(tags, FINETUNE_ALLOW_LIST)
    # The real list of Phi-3-mini before 2026-06-16: A100 and ND96 only (our old fixture also listed V100s).
    assert allow == [
        "Standard_NC24ads_A100_v4",
        "Standard_NC48ads_A100_v4",
        "Standard_NC96ads_A100_v4",
        "Standard_ND96asr_v4",
        "Standard_ND96amsr_A100_v4",
    ]
    defaults = parse_model_defaults(tags)
    assert defaults["apply_lora"] == "true" and defaults["deepspeed_stage"] == 2
    assert defaults["logging_strategy"] == "steps" and defaults["ignore_mismatched_sizes"] == "false"


def test_missing_tags_mean_no_list_and_no_defaults() -> None:
    assert parse_sku_list({}, FINETUNE_ALLOW_LIST) is None
    assert parse_model_defaults({}) == {}


@pytest.mark.parametrize(
    "text",
    [
        "[" * 301 + "]" * 301,  # the classic few-hundred-character stack exhaustion
        "[[[[['Standard_NC6s_v3']]]]]",
        "{'a': {'b': {'c': {'d': {'e': 1}}}}}",
        "(" * 100 + ")" * 100,
    ],
)
def test_deep_nesting_is_refused_before_parsing(text: str) -> None:
    with pytest.raises(ModelTagError) as exc:
        parse_sku_list({FINETUNE_ALLOW_LIST: text}, FINETUNE_ALLOW_LIST)
    assert issue(exc) == (f"model.tags.{FINETUNE_ALLOW_LIST}", "value nests deeper than 4 levels")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("['" + "9" * 30 + "']", None),  # digits inside a string are text, fine
        ("[" + "9" * 65 + "]", "more than 64 digits"),
        ("[" + "9" * 30 + "]", "more than 18 digits"),
        ("[9**9**9]", "not a Python literal"),
        ("[10**100]", "not a Python literal"),
    ],
)
def test_huge_numbers_are_refused_quickly(text: str, expected: str | None) -> None:
    started = time.perf_counter()
    if expected is None:
        assert parse_literal("t", text) == ["9" * 30]
    else:
        with pytest.raises(ModelTagError) as exc:
            parse_literal("t", text)
        assert expected in issue(exc)[1]
    assert time.perf_counter() - started < 0.5


def test_long_values_are_capped() -> None:
    long_list = "[" + ", ".join(f"'Standard_SKU_{i:05d}'" for i in range(300)) + "]"
    assert len(long_list) > MAX_TAG_CHARS
    with pytest.raises(ModelTagError) as exc:
        parse_sku_list({FINETUNE_ALLOW_LIST: long_list}, FINETUNE_ALLOW_LIST)
    assert f"at most {MAX_TAG_CHARS}" in issue(exc)[1]
    # 300+ characters that are fine are still parsed.
    ok = "[" + ", ".join(f"'Standard_NC{i}s_v3'" for i in range(30)) + "]"
    assert len(ok) > 300
    assert len(parse_sku_list({FINETUNE_ALLOW_LIST: ok}, FINETUNE_ALLOW_LIST) or []) == 30


@pytest.mark.parametrize(
    "text",
    ["'Standard_NC24ads_A100_v4'", "{'Standard_NC24ads_A100_v4': 1}", "['Standard_NC6s_v3', 3]", "None", "42"],
)
def test_an_allow_list_must_be_a_list_of_names(text: str) -> None:
    with pytest.raises(ModelTagError) as exc:
        parse_sku_list({FINETUNE_ALLOW_LIST: text}, FINETUNE_ALLOW_LIST)
    assert issue(exc) == (f"model.tags.{FINETUNE_ALLOW_LIST}", "expected a list of SKU names")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("['a', 'b'", "not a Python literal (SyntaxError"),
        ("__import__('os').system('id')", "not a Python literal (ValueError"),
        ("[open('/etc/passwd')]", "not a Python literal"),
    ],
)
def test_code_and_syntax_errors_are_not_literals(text: str, message: str) -> None:
    with pytest.raises(ModelTagError) as exc:
        parse_sku_list({FINETUNE_ALLOW_LIST: text}, FINETUNE_ALLOW_LIST)
    assert message in issue(exc)[1]


def test_model_defaults_must_be_a_dict_with_text_keys() -> None:
    for text in ("['apply_lora']", "{1: 'true'}"):
        with pytest.raises(ModelTagError) as exc:
            parse_model_defaults({MODEL_DEFAULTS: text})
        assert issue(exc) == (f"model.tags.{MODEL_DEFAULTS}", "expected a dict of parameter names to values")


def test_parser_exhaustion_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for error in (MemoryError, RecursionError):

        def explode(text: str, error: type[BaseException] = error) -> object:
            raise error()

        monkeypatch.setattr(ast, "literal_eval", explode)
        with pytest.raises(ModelTagError) as exc:
            parse_literal(MODEL_DEFAULTS, "{'a': 1}")
        assert issue(exc) == (f"model.tags.{MODEL_DEFAULTS}", "value too complex to parse")


def test_tag_values_that_are_not_text_are_refused() -> None:
    with pytest.raises(ModelTagError) as exc:
        parse_literal(FINETUNE_ALLOW_LIST, ["Standard_NC6s_v3"])  # type: ignore[arg-type]
    assert issue(exc)[1] == "tag value must be text"


def test_allow_lists_come_from_system_metadata_first_and_say_so() -> None:
    from shared.config.model_tags import read_allow_list

    meta = {"supportedComputes": {"finetuneComputes": ["Standard_NC24ads_A100_v4"]}}
    tags = {FINETUNE_ALLOW_LIST: "['Standard_NC6s_v3']"}
    first = read_allow_list("finetune", tags, meta)
    assert (first.skus, first.source) == (
        ["Standard_NC24ads_A100_v4"],
        "system_metadata.supportedComputes.finetuneComputes",
    )
    older = read_allow_list("finetune", tags, {})
    assert (older.skus, older.source) == (["Standard_NC6s_v3"], "tags.finetune_compute_allow_list")
    none = read_allow_list("inference", {}, meta)
    assert none.skus is None and "neither system_metadata.supportedComputes.inferenceComputes" in none.source
    with pytest.raises(ModelTagError) as exc:
        read_allow_list("finetune", {}, {"supportedComputes": {"finetuneComputes": "Standard_NC24ads_A100_v4"}})
    assert issue(exc) == ("model.system_metadata.supportedComputes.finetuneComputes", "expected a list of SKU names")


def test_lifecycle_dates_from_system_metadata_or_the_tags_of_older_versions() -> None:
    from datetime import date

    from shared.config.model_tags import read_lifecycle

    current = read_lifecycle(
        {},
        {
            "deprecation": {
                "finetuneDeprecationDate": "2025-06-30T00:00:00.000000Z",
                "finetuneRetirementDate": "2025-08-30T00:00:00.000000Z",
            }
        },
        archived=False,
    )
    assert current.source == "system_metadata.deprecation"
    assert not current.deprecated("finetune", date(2025, 6, 29))
    assert current.deprecated("finetune", date(2025, 6, 30)) and not current.retired("finetune", date(2025, 8, 29))
    assert current.retired("finetune", date(2025, 8, 30))
    assert not current.retired("inference", date(2030, 1, 1))  # no inference dates given
    older = read_lifecycle({"FinetuneRetirementDate": "2025-08-30"}, {}, archived=False)
    assert older.dates == {"finetune_retirement": date(2025, 8, 30)} and older.source == "tags FinetuneRetirementDate"
    assert read_lifecycle({}, {}, archived=True).retired("finetune", date(2000, 1, 1))
    with pytest.raises(ModelTagError) as exc:
        read_lifecycle({"FinetuneRetirementDate": "soon"}, {}, archived=False)
    assert issue(exc)[0] == "model.tags.FinetuneRetirementDate"
