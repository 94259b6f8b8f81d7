"""A real endpoint server on loopback (uvicorn with the endpoint's limits) over the tiny model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from local.common import processes
from local.common.httplimits import bounded_config
from local.platform.models import TINY, materialize
from local.platform.serving.batching import BatchEngine
from local.platform.serving.chat_model import ChatModel
from local.platform.serving.server import EndpointApp, ServeSettings
from local.platform.serving.serving import Keys, Stats

PRIMARY = "primary-key-for-openai-tests"
SECONDARY = "secondary-key-for-openai-tests"
MODEL_ID = "tiny-chat:1"


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> ChatModel:
    cache = tmp_path_factory.getbasetemp() / "local-model-cache"
    return ChatModel.from_hf_dir(materialize(TINY, cache))


@contextmanager
def running_server(
    chat: ChatModel,
    stats_dir: Path,
    *,
    max_batch: int = 8,
    header_timeout_s: float = 10.0,
    max_connections: int = 64,
    **settings: Any,
) -> Iterator[tuple[str, EndpointApp]]:
    """``(base URL, app)`` of a server running in a thread until the block ends."""
    port = processes.free_port()
    app = EndpointApp(
        keys=Keys(PRIMARY, SECONDARY),
        stats=Stats(stats_dir / "stats.json"),
        load_model=lambda: BatchEngine(chat, max_batch=max_batch),
        settings=ServeSettings(model_name=MODEL_ID, **settings),
    )
    config = bounded_config(
        app.app,
        host="127.0.0.1",
        port=port,
        over_cap="close",  # as the endpoint's server process (server.serve)
        header_timeout_s=header_timeout_s,
        max_connections=max_connections,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not (server.started and app.loaded.is_set()):
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def serve(tiny_chat: ChatModel, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start servers with given settings; each stops when the test ends."""
    stack: list[Any] = []

    def start(**settings: Any) -> tuple[str, EndpointApp]:
        manager = running_server(tiny_chat, tmp_path, **settings)
        stack.append(manager)
        return manager.__enter__()

    yield start
    for manager in reversed(stack):
        manager.__exit__(None, None, None)
