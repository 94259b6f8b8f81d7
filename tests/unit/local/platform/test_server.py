"""The endpoint server app with a stand-in chat model: payloads, keys, errors, counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from local.platform.serving.server import EndpointApp, ServeSettings
from local.platform.serving.serving import GenerationParams, Generator, Keys, Stats, activity_since
from local.platform.workspace import read_json

PRIMARY = "primary-key-for-tests"
SECONDARY = "secondary-key-for-tests"


class EchoModel:
    """Answers ``echo: <last message>``; counts words as tokens; records every generate() call."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[tuple[int, dict[str, Any]]] = []
        self.delay_s = delay_s

    def generate(self, conversations: list[list[dict[str, str]]], **params: Any) -> list[str]:
        self.calls.append((len(conversations), params))
        time.sleep(self.delay_s)
        return [f"echo: {c[-1]['content']}" for c in conversations]

    def count_tokens(self, conversation: Any) -> int:
        text = conversation if isinstance(conversation, str) else " ".join(m["content"] for m in conversation)
        return len(text.split())


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
        load_model=lambda: model if model is not None else EchoModel(),
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
        {"index": 0, "message": {"role": "assistant", "content": "echo: hi you"}, "finish_reason": "stop"}
    ]
    assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


def test_openai_defaults_map_to_generation_params(tmp_path: Path) -> None:
    model = EchoModel()
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
    assert model.calls[0][1]["do_sample"] is True and model.calls[0][1]["max_new_tokens"] == 256
    assert model.calls[1][1]["do_sample"] is False and model.calls[1][1]["temperature"] == 0


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
        ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "streaming"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
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
    stats = read_json(tmp_path / "stats.json")
    assert stats is not None and stats["request_count"] == 3
    last = datetime.fromisoformat(stats["last_request_at"])
    assert last >= before
    assert client.get("/metrics", headers=bearer()).json()["request_count"] == 3
    assert activity_since(stats, before) == (last, 3)
    assert activity_since(stats, datetime.now(UTC) + timedelta(minutes=2)) == (None, 0)
    # A restarted server keeps counting from the file.
    assert Stats(tmp_path / "stats.json").request_count == 3


def test_health_is_503_while_loading_and_scoring_waits(tmp_path: Path) -> None:
    release = threading.Event()

    def slow_load() -> EchoModel:
        release.wait(10)
        return EchoModel()

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

    def broken() -> EchoModel:
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
    app = make_app(tmp_path, EchoModel(delay_s=0.5), max_concurrent_requests=1)
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
    app = make_app(tmp_path, EchoModel(delay_s=1.0), request_timeout_ms=100)
    with TestClient(app.app) as client:
        assert app.loaded.wait(5)
        response = client.post("/score", json=seed_payload(user("x")), headers=bearer())
    assert response.status_code == 408


def test_generator_batches_concurrent_requests_with_equal_params() -> None:
    model = EchoModel(delay_s=0.2)
    generator = Generator(model, max_batch=4, batch_window_s=0.3)
    params = GenerationParams(max_new_tokens=5)
    futures = [generator.submit(user(str(i)), params) for i in range(3)]
    other = generator.submit(user("other"), GenerationParams(max_new_tokens=9))
    assert [f.result(5).text for f in futures] == ["echo: 0", "echo: 1", "echo: 2"]
    assert other.result(5).text == "echo: other"
    generator.close()
    assert [n for n, _ in model.calls] == [3, 1]


def test_generator_without_batching_calls_one_at_a_time() -> None:
    model = EchoModel()
    generator = Generator(model)
    futures = [generator.submit(user(str(i)), GenerationParams()) for i in range(3)]
    assert [f.result(5).text for f in futures] == ["echo: 0", "echo: 1", "echo: 2"]
    generator.close()
    assert [n for n, _ in model.calls] == [1, 1, 1]


def test_keys_repr_hides_the_keys() -> None:
    assert PRIMARY not in repr(Keys(PRIMARY, SECONDARY))
