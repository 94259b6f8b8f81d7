"""Training throughput of the local recipe: LoRA steps on the committed sample, tokens per second.

    .venv/bin/python benchmarks/train_throughput.py [--model SmolLM2-135M-Instruct] [--steps 20]
        [--max-seq-length 512] [--batch-size 1] [--lora-r 16] [--lora-dropout 0.05] [--threads N]
        [--streams N] [--cache DIR]

Runs the recipe's own pieces (chat template and labels, LoRA, the training loop) without evaluation or
saving, after one warm-up step, and prints tokens/s (non-padding tokens through forward and backward).
``--streams`` sets ``AUTOPILOT_LOCAL_TRAIN_STREAMS`` (0: the setting as it is, ``auto`` by default). The
defaults are the demo's steps (batch 1, dropout 0.05): one conversation a step, which no stream can split;
``--batch-size 4`` gives the streams rows to share.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--streams", type=int, default=0, help="training streams (0: the setting's)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".autopilot" / "models")
    parser.add_argument("--data", type=Path, default=ROOT / "samples" / "ultrachat_sample" / "train_sft.jsonl")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from local.platform.models import materialize, pick_dtype
    from local.platform.training import streams
    from local.platform.training.data import read_conversations, tokenize_split
    from local.platform.training.loop import train
    from local.platform.training.lora import with_lora
    from shared.config.params import ComponentParams

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.streams:
        os.environ[streams.STREAMS_SETTING] = str(args.streams)
    started = time.perf_counter()
    model_dir = materialize(args.model, args.cache)
    print(f"materialize {args.model}: {time.perf_counter() - started:.1f} s ({model_dir})")

    device = torch.device("cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=pick_dtype(device))
    params = ComponentParams(
        apply_lora=True,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        lora_dropout=args.lora_dropout,
        learning_rate=2e-4,
        max_steps=args.steps,
        logging_steps=max(args.steps, 1),
        per_device_train_batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
    )
    model = with_lora(model, params)
    examples = tokenize_split(
        "train", tokenizer, read_conversations(args.data, training=True), args.max_seq_length
    ).examples
    pad = int(tokenizer.pad_token_id)
    warmup = params.model_copy(update={"max_steps": 1, "logging_steps": 1})
    train(model, examples, warmup, pad_token_id=pad, device=device, on_log=lambda e: None)

    stats = train(model, examples, params, pad_token_id=pad, device=device, on_log=lambda e: None)
    rate = stats.train_tokens / stats.train_seconds
    print(
        f"model={args.model} dtype={pick_dtype(device)} threads={torch.get_num_threads()} cpus={os.cpu_count()} "
        f"streams={streams.stream_count(model, device)} lora_r={args.lora_r} lora_dropout={args.lora_dropout} "
        f"batch={args.batch_size} max_seq_length={args.max_seq_length}"
    )
    print(
        f"steps={stats.steps} tokens={stats.train_tokens} seconds={stats.train_seconds:.1f} "
        f"tokens_per_second={rate:.1f} seconds_per_step={stats.train_seconds / stats.steps:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
