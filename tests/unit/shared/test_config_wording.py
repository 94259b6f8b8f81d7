"""The config's errors in the file's words: sections, kinds of values, name rules, "did you mean"."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from shared.config.loader import load_config
from shared.config.model import TrainingConfig
from shared.config.wording import pattern_in_words
from shared.exceptions import ConfigError
from tests.configs import CONFIG


def issues_of(document: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(yaml.safe_dump(document).encode())
    return {i.path: i.message for i in info.value.issues}


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value)]
    return []


def test_every_rule_of_the_config_has_words() -> None:
    patterns = sorted(set(_patterns(TrainingConfig.model_json_schema())))
    assert patterns  # the schema has name rules to describe
    unread = [p for p in patterns if pattern_in_words(p) is None]
    assert unread == []


def test_a_name_rule_is_said_in_words_not_as_a_regex() -> None:
    message = issues_of({**CONFIG, "name": "Bad_Name"})["name"]
    assert message == (
        "must be 1 to 40 characters: lowercase letters, digits and hyphens, starting with a lowercase letter or a "
        "digit (got 'Bad_Name')"
    )
    assert not re.search(r"[\^$\[\]]", message.split(" (got")[0])


def test_a_section_given_as_a_string_is_named_as_a_section() -> None:
    assert issues_of({**CONFIG, "model": "smollm2"})["model"] == "expected a section {name: ...}, got a string"
    assert issues_of({**CONFIG, "data": [1]})["data"].startswith("expected a section {train: ...}, got a list")


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        ({"trainig": {"max_steps": 3}}, "trainig", "unknown key; did you mean `training`?"),
        ({"training": {"max_stepz": 3}}, "training.max_stepz", "unknown key; did you mean `max_steps`?"),
        ({"optimization": {"lora": {"alhpa": 8}}}, "optimization.lora.alhpa", "unknown key; did you mean `alpha`?"),
    ],
)
def test_an_unknown_key_gets_the_closest_known_one(document: dict[str, Any], path: str, message: str) -> None:
    assert issues_of({**CONFIG, **document})[path] == message


def test_an_unknown_key_like_no_other_lists_the_keys_of_its_section() -> None:
    message = issues_of({**CONFIG, "cleanup": {"zzz": 1}})["cleanup.zzz"]
    assert message.startswith("unknown key (the keys here: idle_after_minutes")


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"learning_rate": "abc"}, "expected a number, got a string ('abc')"),
        ({"logging_steps": 2.5}, "expected a whole number, got 2.5"),
    ],
)
def test_a_value_of_the_wrong_kind_says_what_was_expected(training: dict[str, Any], message: str) -> None:
    (key,) = training
    assert issues_of({**CONFIG, "training": training})[f"training.{key}"] == message


def test_no_pydantic_wording_reaches_the_user() -> None:
    document = {**CONFIG, "model": "x", "training": {"learning_rate": "abc", "max_steps": [1]}, "trainig": 1}
    text = json.dumps(issues_of(document))
    for phrase in ("Input should be", "instance of", "ModelSection", "valid dictionary"):
        assert phrase not in text
