"""What a run keeps of the problems it failed on: each cut short, the first that fit, the rest counted."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.exceptions import FieldIssue
from shared.ledger.limits import MAX_ERROR_MESSAGE_CHARS, MAX_ERROR_PATH_CHARS, MAX_ERRORS_KEPT, json_chars
from shared.ledger.parts import errors_to_json, summarised


def test_a_few_short_problems_are_kept_as_they_are() -> None:
    issues = [FieldIssue("training.learning_rate", "must be > 0"), FieldIssue("", "file is empty")]
    assert summarised(issues) == issues


def test_long_paths_and_messages_are_cut_and_the_rest_counted() -> None:
    issues = [FieldIssue("k" * 5000, "m" * 50_000) for _ in range(3)]
    kept = summarised(issues)
    assert all(len(i.path) <= MAX_ERROR_PATH_CHARS and len(i.message) <= MAX_ERROR_MESSAGE_CHARS for i in kept)
    assert kept[0].path.endswith("...") and kept[0].message.endswith("...")
    assert len(kept) == 3


def test_past_the_count_the_last_line_says_how_many_are_not_shown() -> None:
    kept = summarised([FieldIssue(f"f{i}", "unknown key") for i in range(MAX_ERRORS_KEPT + 7)])
    assert len(kept) == MAX_ERRORS_KEPT + 1
    assert kept[-1] == FieldIssue(
        "", f"7 more problem(s) not shown ({MAX_ERRORS_KEPT + 7} in all): fix these and submit again to see the rest"
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.text(max_size=400), st.text(max_size=3000)), max_size=200),
    st.integers(min_value=2_000, max_value=40_000),
)
def test_any_problems_fit_the_budget(problems: list[tuple[str, str]], budget: int) -> None:
    kept = summarised([FieldIssue(p, m) for p, m in problems], budget)
    assert json_chars(errors_to_json(kept)) <= budget
    assert len(kept) <= MAX_ERRORS_KEPT + 1
    if len(kept) < len(problems):
        assert f"({len(problems)} in all)" in kept[-1].message
