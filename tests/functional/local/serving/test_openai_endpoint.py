"""The endpoint server on loopback over the tiny model, driven by the real ``openai`` client and raw sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.functional.local.serving.conftest import MODEL_ID, PRIMARY

HELLO = [{"role": "user", "content": "Say something."}]
# The tiny model's weights are random: sampled at temperature 1 its tokens are varied words, and a seed
# makes them reproducible, which is what stop and batching are checked with.
SAMPLED: dict[str, Any] = {"temperature": 1.0, "seed": 11, "max_tokens": 24}


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=PRIMARY, max_retries=0)


def complete(c: openai.OpenAI, **kwargs: Any) -> Any:
    return c.chat.completions.create(model=MODEL_ID, messages=kwargs.pop("messages", HELLO), **kwargs)


def test_models_are_listed_and_retrieved(serve: Callable[..., Any]) -> None:
    url, _ = serve()
    c = client(url)
    assert [m.id for m in c.models.list()] == [MODEL_ID]
    assert c.models.retrieve(MODEL_ID).owned_by == "autopilot"
    with pytest.raises(openai.NotFoundError) as exc:
        c.models.retrieve("gpt-4o")
    assert exc.value.body["param"] == "model"  # type: ignore[index]


def test_usage_counts_generated_ids_and_finish_reason_is_truthful(serve: Callable[..., Any]) -> None:
    url, _ = serve()
    answer = complete(client(url), **SAMPLED)
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == SAMPLED["max_tokens"]
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + SAMPLED["max_tokens"]
    assert answer.choices[0].message.content


def test_stop_is_honoured_and_not_returned(serve: Callable[..., Any]) -> None:
    url, _ = serve()
    c = client(url)
    full = complete(c, **SAMPLED).choices[0].message.content
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    for given in (stop, [stop, "never-generated-zzz"]):
        answer = complete(c, stop=given, **SAMPLED)
        assert answer.choices[0].finish_reason == "stop"
        assert answer.choices[0].message.content == full[: full.index(stop)]
        assert stop not in answer.choices[0].message.content
        assert answer.usage.completion_tokens < SAMPLED["max_tokens"]


def test_stream_sends_the_same_answer_in_chunks_with_usage(serve: Callable[..., Any]) -> None:
    url, app = serve()
    c = client(url)
    whole = complete(c, **SAMPLED)
    chunks = list(complete(c, stream=True, stream_options={"include_usage": True}, **SAMPLED))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content) > 1  # really streamed
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == SAMPLED["max_tokens"]
    stopped = list(complete(c, stream=True, stop=text.split()[2], **SAMPLED))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in stopped if ch.choices)
    assert streamed == text[: text.index(text.split()[2])]
    assert app.stats.request_count == 3  # streams count as requests for the idle check


def test_concurrent_requests_decode_together_and_answer_as_alone(serve: Callable[..., Any]) -> None:
    url, _ = serve(max_concurrent_requests=8, max_batch=8)
    c = client(url)
    prompts = [[{"role": "user", "content": "Tell me about " + "rivers " * i}] for i in range(1, 6)]
    budgets = [6, 30, 12, 20, 9]
    alone = [
        complete(c, messages=p, temperature=1.0, seed=5 + i, max_tokens=budgets[i]).choices[0].message.content
        for i, p in enumerate(prompts)
    ]
    together: list[Any] = [None] * len(prompts)

    def ask(i: int) -> None:
        together[i] = complete(c, messages=prompts[i], temperature=1.0, seed=5 + i, max_tokens=budgets[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Different prompt lengths joining and leaving the batch at different steps: the same seeded answers.
    assert [a.choices[0].message.content for a in together] == alone
    assert [a.usage.completion_tokens for a in together] == budgets


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format.type"),
        ({"seed": 2**64}, "seed"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_unsupported_or_bad_fields_are_400_naming_them(
    serve: Callable[..., Any], extra: dict[str, Any], param: str
) -> None:
    url, _ = serve()
    with pytest.raises(openai.BadRequestError) as exc:
        complete(client(url), extra_body=extra)
    error = exc.value.body
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and param.split(".")[0] in error["message"]
    assert error["type"] == "invalid_request_error"


def test_accepted_neutral_fields(serve: Callable[..., Any]) -> None:
    url, _ = serve()
    answer = complete(
        client(url),
        n=1,
        logprobs=False,
        response_format={"type": "text"},
        max_completion_tokens=3,
        presence_penalty=0,
        user="someone",
    )
    assert answer.usage.completion_tokens <= 3


def test_deeply_nested_body_is_400(serve: Callable[..., Any]) -> None:
    url, _ = serve()
    for depth in (40, 100_000):
        body = "[" * depth + "]" * depth
        response = httpx.post(
            f"{url}/v1/chat/completions",
            content=body,
            headers={"Authorization": f"Bearer {PRIMARY}", "content-type": "application/json"},
        )
        assert response.status_code == 400, depth
        assert "nests deeper" in response.json()["error"]["message"]


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def test_a_slow_body_holds_no_slot_and_times_out(serve: Callable[..., Any]) -> None:
    url, _ = serve(max_concurrent_requests=1, body_timeout_s=3.0)
    slow = _raw(url)
    slow.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + PRIMARY.encode()
        + b'\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"messages": ['
    )
    c = client(url)
    for _ in range(5):  # the only slot is free while the slow body trickles
        assert complete(c, max_tokens=2).usage.completion_tokens <= 2
    reply = slow.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
    slow.close()


def test_slow_headers_are_cut_and_connections_are_capped(serve: Callable[..., Any]) -> None:
    url, _ = serve(header_timeout_s=1.0, max_connections=3)
    trickle = _raw(url)
    trickle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
    assert trickle.recv(4096) == b""  # closed by the server, not answered
    trickle.close()
    held = [_raw(url) for _ in range(3)]
    extra = _raw(url)
    assert extra.recv(4096) == b""  # over the cap: closed at once
    extra.close()
    for conn in held:
        conn.close()
    assert httpx.get(f"{url}/health").status_code == 200
