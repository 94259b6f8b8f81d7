"""The Azure ML chat scoring payload, as the saved MLflow model reads it."""

from __future__ import annotations

import pytest

from local.platform.serving.chat_model import GenerationParamError, scoring_parameters
from local.platform.serving.chat_pyfunc import generation_options, parse_scoring_payload
from shared.scoring import DEFAULT_PARAMETERS

CONVERSATION = [{"role": "user", "content": "What is the capital of Peru?"}]


def test_seed_payload_parses() -> None:
    payload = {
        "input_data": {
            "input_string": [CONVERSATION],
            "parameters": {"temperature": 0.6, "top_p": 0.9, "do_sample": True, "max_new_tokens": 200},
        },
        "params": {},
    }
    conversations, parameters = parse_scoring_payload(payload)
    assert conversations == [CONVERSATION]
    assert generation_options(parameters) == {
        "temperature": 0.6,
        "top_p": 0.9,
        "do_sample": True,
        "max_new_tokens": 200,
        "seed": None,
    }


def test_missing_parameters_get_the_contract_defaults() -> None:
    _, parameters = parse_scoring_payload({"input_data": {"input_string": [CONVERSATION]}})
    assert generation_options(parameters) == DEFAULT_PARAMETERS.model_dump()
    assert generation_options({"do_sample": False})["do_sample"] is False


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([], "JSON object"),
        ({"input_data": {}}, "input_string"),
        ({"input_data": {"input_string": []}}, "input_data.input_string"),
        ({"input_data": {"input_string": ["hi"]}}, r"input_string\.0"),
        ({"input_data": {"input_string": [[{"role": "bot", "content": "x"}]]}}, r"input_string\.0\.0\.role"),
        ({"input_data": {"input_string": [CONVERSATION], "parameters": [1]}}, "parameters"),
    ],
)
def test_malformed_payloads_say_what_is_wrong(payload: object, expected: str) -> None:
    with pytest.raises(GenerationParamError, match=expected):
        parse_scoring_payload(payload)


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"temprature": 0.5}, "temprature"),
        ({"do_sample": "yes"}, "do_sample"),
        ({"seed": 2**64}, "seed"),
    ],
)
def test_bad_parameters_are_named(parameters: dict, expected: str) -> None:
    with pytest.raises(GenerationParamError, match=expected):
        generation_options(parameters)


@pytest.mark.parametrize(
    ("temperature", "top_p", "max_new_tokens", "name"),
    [
        (-1, 1.0, 10, "temperature"),
        (0.5, 0, 10, "top_p"),
        (0.5, 1.0, 0, "max_new_tokens"),
        (0.5, 1.0, 1.5, "max_new_tokens"),
    ],
)
def test_generation_ranges(temperature: float, top_p: float, max_new_tokens: int, name: str) -> None:
    with pytest.raises(GenerationParamError, match=name):
        scoring_parameters({"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens})
