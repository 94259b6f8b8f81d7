"""Where a recipe training step spends its time: torch.profiler over a few LoRA steps, top operators.

    .venv/bin/python benchmarks/profile_train.py [--steps 3] [--batch-size 4] [--max-seq-length 512]
        [--lora-r 16] [--top 25] [--cache DIR]

    AUTOPILOT_LOCAL_DTYPE=float32 .venv/bin/python benchmarks/profile_train.py   # the fp32 path

Runs the recipe's loop (``loop.train``, packed rows, the dtype ``pick_dtype`` chooses) on SmolLM2-135M with
the same shape as ``train_vs_trl.py``, one warm-up step outside the profile, then prints the operators by
self CPU time and a grouped breakdown (matmuls, attention, elementwise, copies and casts, optimizer, other).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

GROUPS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm"),
    "attention": ("attention", "sdpa", "softmax", "_scaled_dot"),
    "copy/cast": ("aten::copy_", "aten::to", "aten::_to_copy", "aten::clone", "aten::contiguous", "aten::cat"),
    "optimizer": ("adamw", "_foreach", "clip_grad", "Optimizer.step", "aten::norm", "aten::lerp", "aten::addcdiv"),
    "loss/output": ("cross_entropy", "log_softmax", "nll_loss", "index", "masked"),
}


def group_of(name: str) -> str:
    lower = name.lower()
    for group, needles in GROUPS.items():
        if any(needle.lower() in lower for needle in needles):
            return group
    return "elementwise/other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--top", type=int, default=25)
    default_cache = ROOT / ".autopilot" / "models"
    if not default_cache.exists() and Path("/work/main/.autopilot/models").exists():
        default_cache = Path("/work/main/.autopilot/models")
    parser.add_argument("--cache", type=Path, default=default_cache)
    parser.add_argument("--data", type=Path, default=ROOT / "samples" / "ultrachat_sample" / "train_sft.jsonl")
    args = parser.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from local.platform.models import materialize, pick_dtype
    from local.platform.training import loop
    from local.platform.training.attention import use_packed_attention
    from local.platform.training.data import read_conversations, tokenize_split
    from local.platform.training.lora import with_lora
    from shared.config.params import ComponentParams

    model_dir = materialize(args.model, args.cache)
    dtype = pick_dtype(torch.device("cpu"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    set_seed(42)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    use_packed_attention(model)  # as the recipe does
    params = ComponentParams(
        apply_lora=True,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        max_steps=args.steps + 1,
        logging_steps=1,
        per_device_train_batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
    )
    model = with_lora(model, params)
    conversations = read_conversations(args.data, training=True)
    examples = tokenize_split("train", tokenizer, conversations, args.max_seq_length).examples
    tokens: list[float] = []
    profiler: list[Any] = []

    def on_log(entry: dict[str, float]) -> None:
        if entry["step"] == 1:  # the warm-up step ends: profile the rest
            profiler.append(profile(activities=[ProfilerActivity.CPU], record_shapes=False))
            profiler[0].__enter__()
            tokens.append(time.perf_counter())
        else:
            tokens.append(entry["tokens_per_second"])

    print(f"model={args.model} dtype={dtype} threads={torch.get_num_threads()} steps={args.steps} (+1 warm-up)")
    loop.train(
        model,
        examples,
        params,
        pad_token_id=int(tokenizer.pad_token_id),
        device=torch.device("cpu"),
        on_log=on_log,
        compute_dtype=dtype,
    )
    prof = profiler[0]
    prof.__exit__(None, None, None)
    rates = tokens[1:]
    print(f"tokens/s per profiled step (profiler on): {' '.join(f'{r:.0f}' for r in rates)}")
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        totals[group_of(event.key)] += event.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    print("self CPU time by group:")
    for group, micros in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {group:20s} {micros / 1e6:7.2f} s  {micros / whole:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
