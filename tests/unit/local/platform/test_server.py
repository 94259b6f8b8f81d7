"""The endpoint server app with a stand-in chat model: payloads, keys, errors, counters."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from local.common.statefiles import read_json
from local.platform.serving.batching import Sampling
from local.platform.serving.server import EndpointApp, ServeSettings
from local.platform.serving.serving import Keys, Stats, activity_since
from local.platform.serving.state import RequestCounts
from shared.scoring import DEFAULT_PARAMETERS
from tests.unit.local.platform.serving_fakes import EchoEngine

PRIMARY = "primary-key-for-tests"
SECONDARY = "secondary-key-for-tests"


def seed_payload(*conversations: list[dict[str, str]], **parameters: Any) -> dict[str, Any]:
    params = {"temperature": 0.6, "top_p": 0.9, "do_sample": True, "max_new_tokens": 50, **parameters}
    return {"input_data": {"input_string": list(conversations), "parameters": params}, "params": {}}


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def bearer(key: str = PRIMARY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_app(tmp_path: Path, model: Any = None, **settings: Any) -> EndpointApp:
    return EndpointApp(
        keys=Keys(PRIMARY, SECONDARY),
        stats=Stats(tmp_path / "stats.json"),
        load_model=lambda: model if model is not None else EchoEngine(),
        settings=ServeSettings(model_name="m:1", **settings),
    )


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[EndpointApp, TestClient]]:
    app = make_app(tmp_path)
    with TestClient(app.app) as client:
        assert app.loaded.wait(5)
        yield app, client


def test_score_answers_like_a_managed_chat_endpoint(endpoint: tuple[EndpointApp, TestClient]) -> None:
    _, client = endpoint
    response = client.post("/score", json=seed_payload(user("hello there")), headers=bearer())
    assert response.status_code == 200
    assert response.json() == {"output": "echo: hello there"}


def test_score_with_several_conversations_answers_in_order(endpoint: tuple[EndpointApp, TestClient]) -> None:
    _, client = endpoint
    response = client.post("/score", json=seed_payload(user("one"), user("two")), headers=bearer(SECONDARY))
    assert response.status_code == 200
    assert response.json() == [{"output": "echo: one"}, {"output": "echo: two"}]


def test_openai_chat_completions(endpoint: tuple[EndpointApp, TestClient]) -> None:
    _, client = endpoint
    body = {"model": "whatever", "messages": [{"role": "user", "content": "hi you"}], "max_tokens": 20, "n": 1}
    response = client.post("/v1/chat/completions", json=body, headers={"api-key": PRIMARY})
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-") and isinstance(data["created"], int)
    assert data["model"] == "whatever"
    assert data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: hi you"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


def test_openai_defaults_map_to_generation_params(tmp_path: Path) -> None:
    model = EchoEngine()
    app = make_app(tmp_path, model)
    with TestClient(app.app) as client:
        assert app.loaded.wait(5)
        first: dict[str, Any] = {
            "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "x"}]
        }
        assert client.post("/v1/chat/completions", json=first, headers=bearer()).status_code == 200
        parts: dict[str, Any] = {
            "messages": [{"role": "user", "content": [{"type": "text", "text": "parts"}]}],
            "temperature": 0,
        }
        assert client.post("/v1/chat/completions", json=parts, headers=bearer()).json()["model"] == "m:1"
    # OpenAI's defaults (temperature 1, top_p 1); the token budget is the scoring contract's default.
    assert model.calls[0] == Sampling(max_new_tokens=DEFAULT_PARAMETERS.max_new_tokens, sample=True)
    assert model.calls[1].sample is False and model.calls[1].temperature == 0


def test_score_parameters_follow_the_contract_defaults(tmp_path: Path) -> None:
    model = EchoEngine()
    app = make_app(tmp_path, model)
    with TestClient(app.app) as client:
        assert app.loaded.wait(5)
        body = {"input_data": {"input_string": [user("x")]}}
        assert client.post("/score", json=body, headers=bearer()).status_code == 200
        greedy = seed_payload(user("x"), do_sample=False, seed=7)
        assert client.post("/score", json=greedy, headers=bearer()).status_code == 200
    assert model.calls[0] == Sampling(max_new_tokens=200, sample=True, temperature=0.6, top_p=0.9)
    assert model.calls[1].sample is False and model.calls[1].seed == 7


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"api-key": "wrong"},
        {"Authorization": PRIMARY},
        {"Authorization": "Bearer "},
    ],
)
@pytest.mark.parametrize("path", ["/score", "/v1/chat/completions", "/metrics"])
def test_missing_or_wrong_key_is_401(
    endpoint: tuple[EndpointApp, TestClient], headers: dict[str, str], path: str
) -> None:
    _, client = endpoint
    if path == "/metrics":
        response = client.get(path, headers=headers)
    else:
        response = client.post(path, json=seed_payload(user("x")), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert PRIMARY not in response.text and SECONDARY not in response.text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"input_data": {"input_string": []}}, "input_data.input_string"),
        ({"input_data": {"input_string": [[{"role": "bot", "content": "x"}]]}}, "role"),
        ({"input_data": {"input_string": [[{"role": "user", "content": ""}]]}}, "content"),
        ({"input_data": {"input_string": [[]]}}, "1-64 messages"),
        (seed_payload(user("x"), max_new_tokens=100_000), "max_new_tokens"),
        (seed_payload(user("x"), temperature=-1), "temperature"),
        (seed_payload(user("x"), top_k=3), "top_k"),
        (seed_payload(user("x"), seed=2**64), "seed"),
        ({"inputs": "x"}, "input_data"),
        ([1, 2], "ScoreRequest"),
        ({"input_data": {"input_string": [user("y" * 20_000) * 4]}}, "characters"),
    ],
)
def test_malformed_score_payload_is_400_with_the_reason(
    endpoint: tuple[EndpointApp, TestClient], body: Any, reason: str
) -> None:
    _, client = endpoint
    response = client.post("/score", json=body, headers=bearer())
    assert response.status_code == 400
    assert reason in response.json()["error"]["message"]


def test_malformed_json_and_openai_limits_are_400(endpoint: tuple[EndpointApp, TestClient]) -> None:
    _, client = endpoint
    response = client.post("/score", content=b"{not json", headers={**bearer(), "content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]
    cases = [
        ({"messages": [{"role": "user", "content": "x"}], "tools": []}, "tools: this field is not supported"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "seed": 2**64}, "seed"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
    ]
    for body, reason in cases:
        response = client.post("/v1/chat/completions", json=body, headers=bearer())
        assert response.status_code == 400, body
        assert reason in response.json()["error"]["message"]


def test_body_over_the_limit_is_400(endpoint: tuple[EndpointApp, TestClient]) -> None:
    _, client = endpoint
    response = client.post("/score", content=b"x" * (1024 * 1024 + 1), headers=bearer())
    assert response.status_code == 400 and "larger than" in response.json()["error"]["message"]


def test_counters_advance_for_scoring_requests_only(endpoint: tuple[EndpointApp, TestClient], tmp_path: Path) -> None:
    _, client = endpoint
    for _ in range(3):
        assert client.get("/health").json() == {"status": "healthy"}
    client.post("/score", json=seed_payload(user("x")))  # no key: not activity
    assert read_json(tmp_path / "stats.json") is None

    before = datetime.now(UTC) - timedelta(seconds=1)
    client.post("/score", json=seed_payload(user("x")), headers=bearer())
    client.post("/v1/chat/completions", json={"messages": user("y")}, headers=bearer())
    client.post("/score", json={"bad": 1}, headers=bearer())  # answered 400, still a request
    stats = RequestCounts.load(tmp_path / "stats.json")
    assert stats is not None and stats.request_count == 3
    last = stats.last_request_at
    assert last is not None and last >= before
    metrics = client.get("/metrics", headers=bearer()).json()
    assert metrics["request_count"] == 3 and metrics["last_request_at"] == last.isoformat()
    assert activity_since(stats, before) == (last, 3)
    assert activity_since(stats, datetime.now(UTC) + timedelta(minutes=2)) == (None, 0)
    # A restarted server keeps counting from the file.
    assert Stats(tmp_path / "stats.json").request_count == 3


def test_health_is_503_while_loading_and_scoring_waits(tmp_path: Path) -> None:
    release = threading.Event()

    def slow_load() -> EchoEngine:
        release.wait(10)
        return EchoEngine()

    app = EndpointApp(
        keys=Keys(PRIMARY, SECONDARY),
        stats=Stats(tmp_path / "stats.json"),
        load_model=slow_load,
        settings=ServeSettings(),
    )
    with TestClient(app.app) as client:
        assert client.get("/health").status_code == 503
        assert client.post("/score", json=seed_payload(user("x")), headers=bearer()).status_code == 503
        release.set()
        assert app.loaded.wait(5)
        assert client.get("/health").status_code == 200


def test_model_that_cannot_load_reports_failed(tmp_path: Path) -> None:
    failures: list[str] = []

    def broken() -> EchoEngine:
        raise OSError("weights missing")

    app = EndpointApp(
        keys=Keys(PRIMARY, SECONDARY),
        stats=Stats(tmp_path / "stats.json"),
        load_model=broken,
        settings=ServeSettings(),
        on_load_failed=failures.append,
    )
    with TestClient(app.app) as client:
        deadline = time.monotonic() + 5
        while not failures and time.monotonic() < deadline:
            time.sleep(0.02)
        assert failures == ["OSError: weights missing"]
        response = client.get("/health")
        assert response.status_code == 503 and response.json()["status"] == "failed"


def test_too_many_concurrent_requests_get_429(tmp_path: Path) -> None:
    app = make_app(tmp_path, EchoEngine(delay_s=0.5), max_concurrent_requests=1)
    results: list[int] = []
    with TestClient(app.app) as client:
        assert app.loaded.wait(5)

        def call() -> None:
            results.append(client.post("/score", json=seed_payload(user("x")), headers=bearer()).status_code)

        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results) == [200, 429, 429]


def test_slow_generation_times_out_with_408(tmp_path: Path) -> None:
    app = make_app(tmp_path, EchoEngine(delay_s=1.0), request_timeout_ms=100)
    with TestClient(app.app) as client:
        assert app.loaded.wait(5)
        response = client.post("/score", json=seed_payload(user("x")), headers=bearer())
    assert response.status_code == 408


def test_stream_is_server_sent_events_ending_with_done(endpoint: tuple[EndpointApp, TestClient]) -> None:
    app, client = endpoint
    body = {"messages": user("a b c"), "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=body, headers=bearer()) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "echo: a b c"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert app._in_flight == 0  # the stream gave its slot back


def test_nested_body_is_400_not_500(endpoint: tuple[EndpointApp, TestClient]) -> None:
    _, client = endpoint
    for depth in (33, 50_000):
        nested = "[" * depth + "]" * depth
        body = '{"input_data": {"input_string": [], "x": ' + nested + "}}"
        response = client.post(
            "/score", content=body.encode(), headers={**bearer(), "content-type": "application/json"}
        )
        assert response.status_code == 400, depth
        assert "nests deeper than 32" in response.json()["error"]["message"]


def test_keys_repr_hides_the_keys() -> None:
    assert PRIMARY not in repr(Keys(PRIMARY, SECONDARY))


def test_the_key_is_asked_only_on_routes_that_exist_with_their_method(
    endpoint: tuple[EndpointApp, TestClient],
) -> None:
    _, client = endpoint
    assert client.get("/no-such-route").status_code == 404
    assert client.get("/score").status_code == 405  # a wrong method, keyed or not
    assert client.get("/v1/models", headers=bearer()).json()["data"][0]["id"] == "m:1"
    missing = client.get("/v1/models/other", headers=bearer())
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


class BrokenEngine(EchoEngine):
    def submit(self, conversation: list[dict[str, str]], sampling: Sampling, on_text: Any = None) -> Any:
        raise RuntimeError("the kernel fell over")


def test_an_unexpected_failure_is_a_500_in_the_error_shape_and_frees_its_slot(tmp_path: Path) -> None:
    app = make_app(tmp_path, BrokenEngine(), max_concurrent_requests=1)
    with TestClient(app.app, raise_server_exceptions=False) as client:
        assert app.loaded.wait(5)
        for _ in range(2):  # the one slot is free again after the failure
            response = client.post("/score", json=seed_payload(user("x")), headers=bearer())
            assert response.status_code == 500
            assert response.json()["error"] == {
                "message": "generation failed; see the endpoint log",
                "type": "server_error",
                "param": None,
                "code": "InternalServerError",
            }
    assert app._in_flight == 0
