"""One client's parameters never break another's answer, nor hold the engine.

Found by the hostile-input round (issue 22, finding 5): a ``temperature`` or ``top_p`` of 1e-300 (or 5e-324,
1e-45) timed the request out, and a normal request decoded beside it got a 500. Such temperatures are greedy
decoding (``shared.scoring.MIN_SAMPLING_TEMPERATURE``), the most likely token always stays in a tiny nucleus,
and whatever fails for one row of a batch fails that row alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from local.platform.serving.batching import BatchEngine, Sampling
from local.platform.serving.chat_model import ChatModel
from tests.functional.local.serving.conftest import MODEL_ID, PRIMARY

HELLO = [{"role": "user", "content": "Say something."}]
TINY_NUMBERS = (1e-300, 5e-324, 1e-45)


def client(url: str) -> openai.OpenAI:
    # Well below the server's own request timeout: an engine held by a request shows as a client timeout.
    return openai.OpenAI(base_url=f"{url}/v1", api_key=PRIMARY, max_retries=0, timeout=20)


def complete(c: openai.OpenAI, **kwargs: Any) -> str:
    answer = c.chat.completions.create(model=MODEL_ID, messages=HELLO, max_tokens=12, **kwargs)
    return str(answer.choices[0].message.content)


@pytest.mark.parametrize("tiny", TINY_NUMBERS)
def test_a_tiny_temperature_or_top_p_is_answered_as_greedy(serve: Callable[..., Any], tiny: float) -> None:
    url, _ = serve()
    c = client(url)
    greedy = complete(c, temperature=0)
    assert complete(c, temperature=tiny, seed=3) == greedy
    # top_p that small keeps only the most likely token: greedy as well, at any temperature.
    assert complete(c, temperature=1.0, top_p=tiny, seed=3) == greedy


def test_a_tiny_temperature_on_score_is_answered(serve: Callable[..., Any]) -> None:
    url, _ = serve()
    body = {"input_data": {"input_string": [HELLO], "parameters": {"temperature": 1e-300, "max_new_tokens": 12}}}
    greedy = {"input_data": {"input_string": [HELLO], "parameters": {"do_sample": False, "max_new_tokens": 12}}}
    headers = {"Authorization": f"Bearer {PRIMARY}"}
    tiny = httpx.post(f"{url}/score", json=body, headers=headers, timeout=20)
    plain = httpx.post(f"{url}/score", json=greedy, headers=headers, timeout=20)
    assert tiny.status_code == plain.status_code == 200, tiny.text
    assert tiny.json() == plain.json()


def test_concurrent_clients_beside_hostile_parameters_get_their_own_answers(serve: Callable[..., Any]) -> None:
    url, _ = serve(max_concurrent_requests=8)
    c = client(url)
    normal = {"temperature": 1.0, "seed": 11}
    alone = complete(c, **normal)
    answers: dict[str, str] = {}

    def ask(name: str, **kwargs: Any) -> None:
        answers[name] = complete(c, **kwargs)

    threads = [
        threading.Thread(target=ask, args=(f"hostile-{i}",), kwargs={"temperature": t})
        for i, t in enumerate(TINY_NUMBERS)
    ]
    threads.append(threading.Thread(target=ask, args=("normal",), kwargs=normal))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert answers.get("normal") == alone
    assert len(answers) == len(TINY_NUMBERS) + 1


def test_a_row_that_fails_while_decoding_fails_alone(tiny_chat: ChatModel) -> None:
    """A streaming client whose callback raises (its connection gone) is dropped; the row decoded beside it in
    the same batch still gets exactly the answer it gets alone."""
    engine = BatchEngine(tiny_chat, max_batch=8)
    try:
        sampled = Sampling(max_new_tokens=10, sample=True, temperature=1.0, seed=5)
        alone = engine.submit(HELLO, sampled).future.result(timeout=30)

        # The tiny model's greedy text is blank lines, which streams nothing; sampled rows stream words.
        # Hold the worker inside the first row's callback until the other two are queued, so that all three
        # are in one batch (the worker admits whatever is queued when it comes back).
        held, release = threading.Event(), threading.Event()

        def hold(_: str) -> None:
            if not held.is_set():
                held.set()
                release.wait(timeout=30)

        def broken(_: str) -> None:
            raise ConnectionError("the client went away")

        blocker = engine.submit(HELLO, Sampling(max_new_tokens=20, sample=True, seed=7), hold)
        assert held.wait(timeout=30)
        failing = engine.submit(HELLO, Sampling(max_new_tokens=10, sample=True, seed=8), broken)
        beside = engine.submit(HELLO, sampled)
        release.set()

        assert beside.future.result(timeout=30) == alone
        with pytest.raises(ConnectionError):
            failing.future.result(timeout=30)
        assert blocker.future.result(timeout=30).completion_tokens == 20
    finally:
        engine.close()
