"""A stateful stand-in for the endpoint's decoding engine, for the server's unit tests."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

from local.platform.serving.batching import Completion, Sampling


class EchoEngine:
    """A stand-in for ``BatchEngine``: answers ``echo: <last message>`` on a thread, counting words as tokens
    (the text streamed word by word); records the sampling of every request."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[Sampling] = []
        self.delay_s = delay_s

    def submit(self, conversation: list[dict[str, str]], sampling: Sampling, on_text: Any = None) -> Any:
        self.calls.append(sampling)
        future: Future[Completion] = Future()

        def run() -> None:
            time.sleep(self.delay_s)
            if not future.set_running_or_notify_cancel():
                return  # given up by the server (a timeout), as BatchEngine skips it
            text = f"echo: {conversation[-1]['content']}"
            if on_text is not None:
                for i, word in enumerate(text.split(" ")):
                    on_text(word if i == 0 else " " + word)
            prompt = sum(len(m["content"].split()) for m in conversation)
            future.set_result(Completion(text, prompt, len(text.split()), "stop"))

        threading.Thread(target=run, daemon=True).start()
        return SimpleNamespace(future=future, cancel=lambda: None)

    def close(self) -> None:
        pass
