"""A lone request through the batching engine decodes what ``model.generate`` decodes, and a request that
arrives while it decodes joins the batch and gets the answer it gets alone."""

from __future__ import annotations

import threading

import torch

from local.platform.serving.batching import BatchEngine, Sampling
from local.platform.serving.chat_model import ChatModel

QUESTION = [{"role": "user", "content": "Name three rivers."}]
OTHER = [{"role": "user", "content": "What is bread made of?"}]


def generated_ids(chat: ChatModel, conversation: list[dict[str, str]], max_new_tokens: int) -> list[int]:
    """``model.generate``'s greedy token ids, up to and with the first stop token."""
    prompt = chat.tokenizer([chat.prompt_text(conversation)], return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        output = chat.model.generate(
            **prompt,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=chat.tokenizer.pad_token_id,
            eos_token_id=chat.stop_token_ids,
        )
    ids = output[0, prompt["input_ids"].shape[1] :].tolist()
    stops = [i for i, token in enumerate(ids) if token in chat.stop_token_ids]
    return ids[: stops[0] + 1] if stops else ids


def test_a_lone_greedy_request_decodes_what_generate_decodes(tiny_chat: ChatModel) -> None:
    engine = BatchEngine(tiny_chat, max_batch=8)
    try:
        for conversation in (QUESTION, OTHER):
            answer = engine.submit(conversation, Sampling(max_new_tokens=24)).future.result(timeout=60)
            expected = generated_ids(tiny_chat, conversation, 24)
            assert list(answer.token_ids) == expected
            assert answer.completion_tokens == len(expected) > 0
    finally:
        engine.close()


def test_a_request_arriving_mid_decode_joins_and_both_get_their_answers(tiny_chat: ChatModel) -> None:
    engine = BatchEngine(tiny_chat, max_batch=8)
    try:
        alone = engine.submit(OTHER, Sampling(max_new_tokens=16)).future.result(timeout=60)
        # The first request streams (sampled: the tiny model's greedy text is blank lines, which stream
        # nothing); its callback holds the worker after a few tokens until the second request is queued.
        streamed: list[str] = []
        held, release = threading.Event(), threading.Event()

        def hold(text: str) -> None:
            streamed.append(text)
            if len(streamed) == 3:
                held.set()
                release.wait(timeout=30)

        first = engine.submit(QUESTION, Sampling(max_new_tokens=40, sample=True, seed=3), hold)
        assert held.wait(timeout=60)  # the first request is decoding alone now
        second = engine.submit(OTHER, Sampling(max_new_tokens=16))
        release.set()

        assert second.future.result(timeout=60).token_ids == alone.token_ids
        answer = first.future.result(timeout=60)
        assert answer.completion_tokens == 40 or answer.finish_reason == "stop"
        assert answer.text.startswith("".join(streamed).lstrip())
        again = engine.submit(QUESTION, Sampling(max_new_tokens=40, sample=True, seed=3)).future.result(timeout=60)
        assert again.token_ids == answer.token_ids  # decoding beside another request changed nothing
    finally:
        engine.close()
