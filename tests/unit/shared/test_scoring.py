"""The scoring contract against the real Azure ML request and answer shapes (tests/fixtures/azureml/serving)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.scoring import DEFAULT_PARAMETERS, ScoreRequest, answer_text, scoring_payload

SERVING = Path(__file__).resolve().parents[2] / "fixtures" / "azureml" / "serving"


def test_answers_of_a_real_managed_endpoint_are_read() -> None:
    rows = [json.loads(line) for line in (SERVING / "oss_chat_request_response_sample.jsonl").read_text().splitlines()]
    assert [answer_text(row["response"]) for row in rows] == ["Answer1", "Answer2"]
    # The other shapes Azure's own benchmark reads (aml_benchmark_result_converters_excerpt.py).
    assert answer_text("plain") == "plain"
    assert answer_text([{"0": "first"}]) == "first"


def test_a_real_flat_request_is_one_conversation_with_the_contract_defaults() -> None:
    payload = json.loads((SERVING / "llama3_maap_sample_chat_completions_score.json").read_text())
    request = ScoreRequest.model_validate(payload)
    assert [len(c) for c in request.input_data.input_string] == [2]
    parameters = request.input_data.parameters
    assert (parameters.temperature, parameters.top_p, parameters.max_new_tokens) == (0.8, 0.8, 100)
    assert parameters.do_sample is DEFAULT_PARAMETERS.do_sample


def test_the_seed_payload_round_trips_without_unset_fields() -> None:
    payload = scoring_payload([[{"role": "user", "content": "hi"}]], DEFAULT_PARAMETERS)
    assert payload["input_data"]["parameters"] == {
        "temperature": 0.6,
        "top_p": 0.9,
        "do_sample": True,
        "max_new_tokens": 200,
    }
    assert ScoreRequest.model_validate(payload).input_data.parameters == DEFAULT_PARAMETERS


def test_unknown_parameters_are_refused_by_name() -> None:
    request = json.loads((SERVING / "oss_chat_request_response_sample.jsonl").read_text().splitlines()[0])["request"]
    with pytest.raises(ValueError, match="ignore_eos"):
        ScoreRequest.model_validate(request)
