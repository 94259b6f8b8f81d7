"""Evaluation speed of the local recipe: the evaluation as it was (batches of ``per_device_eval_batch_size``
conversations packed into a row, one after another on one stream) against ``loop.evaluate`` (rows of about
``EVAL_ROW_TOKENS`` tokens on every stream at once), on the same LoRA-wrapped model and split, in one run.

    .venv/bin/python benchmarks/eval_speed.py [--model SmolLM2-135M-Instruct] [--batch-size 4] [--repeats 3]
        [--threads N] [--streams N] [--cache DIR] [--data samples/ultrachat_sample/test_sft.jsonl]

Threads and streams default to what a training job gets on this machine (``workspace.torch_thread_env``: on
two CPUs or fewer one OpenMP thread and a stream per CPU). Prints each way's best of ``--repeats`` (after a
warm-up), its eval loss and perplexity (they must agree to 3 decimals; in bf16 the grouping moves the 4th),
and the ratio old / new.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def evaluate_as_before(model: Any, examples: list[Any], batch_size: int, dtype: Any) -> float:
    """Mean loss per label token the way ``loop.evaluate`` computed it before issue 21: length-sorted
    batches of ``batch_size`` conversations, each packed into one row, one row after another."""
    import torch

    from local.platform.training.data import batch_indices, pack
    from local.platform.training.loop import compute_precision, token_loss_sum

    model.eval()
    total, tokens = 0.0, 0
    with torch.inference_mode(), compute_precision(model, torch.device("cpu"), dtype):
        for indices in batch_indices([len(e.input_ids) for e in examples], batch_size, shuffle=False):
            loss_sum, count, _ = token_loss_sum(model, pack([examples[i] for i in indices]))
            total += float(loss_sum)
            tokens += count
    return total / max(tokens, 1)


def best_of(repeats: int, run: Any) -> tuple[float, Any]:
    run()  # warm-up: first-call costs (kernel selection, allocations) are not evaluation
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--batch-size", type=int, default=4, help="the old way's per_device_eval_batch_size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: what a job gets here)")
    parser.add_argument("--streams", type=int, default=0, help="streams of the new way (0: what a job gets here)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".autopilot" / "models")
    parser.add_argument("--data", type=Path, default=ROOT / "samples" / "ultrachat_sample" / "test_sft.jsonl")
    args = parser.parse_args(argv)

    from local.platform.workspace import torch_thread_env

    job_env = torch_thread_env(dict(os.environ))
    os.environ.update(job_env)  # before torch is imported: OpenMP reads it once

    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from local.platform.models import materialize, pick_dtype
    from local.platform.training import streams
    from local.platform.training.attention import use_packed_attention
    from local.platform.training.data import read_conversations, tokenize_split
    from local.platform.training.loop import evaluate
    from local.platform.training.lora import with_lora
    from shared.config.params import ComponentParams

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    dtype = pick_dtype(device)
    model_dir = materialize(args.model, args.cache)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    use_packed_attention(model)
    model = with_lora(model, ComponentParams(apply_lora=True, lora_r=16, lora_alpha=32, lora_dropout=0.05))
    split = tokenize_split("test", tokenizer, read_conversations(args.data, training=False), args.max_seq_length)
    count = args.streams or streams.stream_count(model, device, for_training=False)
    print(
        f"model={args.model} dtype={dtype} threads={torch.get_num_threads()} streams={count} cpus={os.cpu_count()} "
        f"examples={len(split.examples)} tokens={split.tokens} job_env={job_env or 'torch defaults'}",
        flush=True,
    )

    old_s, old_loss = best_of(args.repeats, lambda: evaluate_as_before(model, split.examples, args.batch_size, dtype))
    print(
        f"old  (batches of {args.batch_size}, 1 stream): {old_s:6.2f} s  loss {old_loss:.4f}  "
        f"perplexity {math.exp(old_loss):.3f}",
        flush=True,
    )
    new_s, new = best_of(args.repeats, lambda: evaluate(model, split.examples, device, dtype, stream_count=count))
    print(
        f"new  (rows of tokens, {count} streams):  {new_s:6.2f} s  loss {new.loss:.4f}  "
        f"perplexity {new.perplexity:.3f}",
        flush=True,
    )
    print(f"old / new: {old_s / new_s:.2f}x  (loss differs by {abs(new.loss - old_loss):.1e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
