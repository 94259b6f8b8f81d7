"""Every user of the scoring contract agrees: a smoke test that validates is served, one that is refused is
refused everywhere, and a request without parameters gets the same defaults from each server."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from autopilot.endpoints import message_payload
from local.platform.serving.chat_model import ChatModel, GenerationParamError, scoring_parameters
from local.platform.serving.chat_pyfunc import generation_options, parse_scoring_payload
from local.platform.serving.server import EndpointApp, ServeSettings
from local.platform.serving.serving import Keys, Stats
from shared.config.model import SmokeTestSection
from shared.scoring import (
    DEFAULT_PARAMETERS,
    MAX_NEW_TOKENS,
    MAX_SEED,
    MAX_TEMPERATURE,
    MIN_SEED,
    ScoreRequest,
    scoring_payload,
)
from tests.unit.local.platform.serving_fakes import EchoEngine

MESSAGES = [{"role": "user", "content": "Is this served?"}]
KEY = "contract-key"

AT_THE_LIMITS = [
    {"max_new_tokens": MAX_NEW_TOKENS},
    {"max_new_tokens": 2000},  # validated by the config (<= 4096) and refused by the server (<= 1024) before
    {"temperature": MAX_TEMPERATURE, "top_p": 1.0},
    {"temperature": 0.0, "do_sample": False},
    {"seed": MAX_SEED},
    {"seed": MIN_SEED},
]
PAST_THE_LIMITS = [
    {"max_new_tokens": MAX_NEW_TOKENS + 1},
    {"max_new_tokens": 0},
    {"temperature": MAX_TEMPERATURE + 0.1},
    {"top_p": 0},
    {"seed": MAX_SEED + 1},
    {"top_k": 5},
]


@pytest.fixture
def client(tmp_path: Path) -> Any:
    app = EndpointApp(
        keys=Keys(KEY, KEY + "-2"),
        stats=Stats(tmp_path / "stats.json"),
        load_model=EchoEngine,
        settings=ServeSettings(max_concurrent_requests=4),
    )
    with TestClient(app.app) as test_client:
        assert app.loaded.wait(5)
        yield test_client


def smoke_payload(parameters: dict[str, Any]) -> dict[str, Any]:
    """What the smoke test sends for a config with these parameters (as the planning service builds it)."""
    section = SmokeTestSection.model_validate({"messages": MESSAGES, "parameters": parameters})
    return scoring_payload([MESSAGES], section.parameters)


@pytest.mark.parametrize("parameters", AT_THE_LIMITS)
def test_a_smoke_test_that_validates_is_served_everywhere(client: Any, parameters: dict[str, Any]) -> None:
    payload = smoke_payload(parameters)
    response = client.post("/score", json=payload, headers={"api-key": KEY})
    assert response.status_code == 200, response.text
    conversations, given = parse_scoring_payload(payload)  # the MLflow pyfunc
    assert conversations == [MESSAGES] and generation_options(given)
    ScoreRequest.model_validate(payload)  # what `autopilot invoke --request-file` checks


@pytest.mark.parametrize("parameters", PAST_THE_LIMITS)
def test_what_the_config_refuses_every_server_refuses(client: Any, parameters: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SmokeTestSection.model_validate({"messages": MESSAGES, "parameters": parameters})
    payload = {"input_data": {"input_string": [MESSAGES], "parameters": parameters}}
    response = client.post("/score", json=payload, headers={"api-key": KEY})
    assert response.status_code == 400
    assert next(iter(parameters)) in response.json()["error"]["message"]
    with pytest.raises(GenerationParamError, match=next(iter(parameters))):
        scoring_parameters(parameters)


def test_one_default_for_every_user() -> None:
    assert SmokeTestSection().parameters == DEFAULT_PARAMETERS
    assert generation_options({}) == DEFAULT_PARAMETERS.model_dump()
    sent = message_payload("hi")["input_data"]["parameters"]
    assert sent == DEFAULT_PARAMETERS.model_dump(exclude_none=True)
    signature = inspect.signature(ChatModel.generate).parameters
    for name in ("temperature", "top_p", "do_sample", "max_new_tokens"):
        assert signature[name].default == getattr(DEFAULT_PARAMETERS, name), name
    assert DEFAULT_PARAMETERS.sampling  # documented in shared/scoring.py: the seed's sampling defaults
