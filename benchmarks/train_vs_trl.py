"""The local recipe against TRL's SFTTrainer, same model, data, LoRA shape, batch and length, in one command.

    .venv/bin/python benchmarks/train_vs_trl.py [--steps 20] [--batch-size 4] [--max-seq-length 512]
        [--lora-r 16] [--threads N] [--repeats 1] [--skip-trl] [--with-padded] [--cache DIR]

    AUTOPILOT_LOCAL_DTYPE=float32 .venv/bin/python benchmarks/train_vs_trl.py   # the fp32-only machine path

Needs TRL, a benchmark-only dependency: ``.venv/bin/pip install -r requirements-bench.txt``.

Prints, per tool, tokens/s (non-padding tokens through forward and backward over ``--steps`` steps after one
warm-up step) and the loss at every step; then the ratio, the machine's matmul peak in the training dtype
(a square matmul, measured here) and each tool's fraction of it. Useful work is counted the same way for both
tools: the frozen base's forward and input-gradient matmuls (4 FLOPs per weight per token) plus the output
layer over label tokens; what a tool computes beyond that (padding, the output layer over prompt tokens) is
its overhead. The recipe runs twice: as it is, and as before its last levers (packed attention in the
model's dtype rather than fp32 on CPU, the model's own output layer and loss rather than the fused
chunked one, one row per micro-batch rather than one per stream), so their gain and the loss at equal
steps are measured, not assumed; ``--with-padded`` adds padded batches (before packing). The matmul peak
is measured around every round and the highest figure is used (the conservative fraction): on a shared
virtual machine the same matmul can run at twice the speed from one minute to the next. The load average
is printed: compare ratios within one command; ``--repeats`` keeps each tool's best round.

Each tool runs in the dtype it picks by default: the recipe through ``pick_dtype`` (``AUTOPILOT_LOCAL_DTYPE``
forces it), TRL with its default ``bf16=True`` (fp32 weights, bf16 autocast) unless the recipe's dtype is
fp32, where TRL gets ``bf16=False`` too, as on an fp32-only machine. Losses are not the same quantity: the
recipe's is over assistant tokens only, TRL's default is over every token of a conversation.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LEARNING_RATE = 2e-4  # the same for both tools, so their curves can be put side by side
TRL_MISSING = "TRL is not installed: .venv/bin/pip install -r requirements-bench.txt (benchmark-only; pinned)"


def matmul_peak(dtype: Any, size: int, repeats: int = 5) -> float:
    """FLOP/s of the best of ``repeats`` square ``size`` matmuls in ``dtype`` (what the CPU sustains at best)."""
    import torch

    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def useful_flops_per_token(config: Any, label_fraction: float) -> float:
    """Forward + input-gradient FLOPs of the frozen linear layers per token, plus the output layer over the
    share of tokens that are labels (attention scores are a few percent at these lengths; left out)."""
    hidden, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    per_layer = hidden * hidden * 2 + hidden * kv * 2 + 3 * hidden * inter  # q, o; k, v; gate, up, down
    return 4.0 * per_layer * layers + 4.0 * hidden * config.vocab_size * label_fraction


def run_recipe(
    model_dir: Path, conversations: list, args: argparse.Namespace, *, packed: bool, current: bool = True
) -> dict[str, Any]:
    """The recipe's loop; ``current`` False runs it as before its last levers: packed attention computed in
    the model's dtype, the model's own output layer and loss (``loop.FUSED_OUTPUT_LOSS`` off), and one row
    per micro-batch (one stream)."""
    import contextlib

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from local.platform.models import pick_dtype
    from local.platform.training import attention, loop, streams
    from local.platform.training.attention import use_packed_attention
    from local.platform.training.data import collate, tokenize_split
    from local.platform.training.lora import with_lora
    from shared.config.params import ComponentParams

    device = torch.device("cpu")
    dtype = pick_dtype(device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    set_seed(42)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    use_packed_attention(model)
    params = ComponentParams(
        apply_lora=True,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        learning_rate=LEARNING_RATE,
        max_steps=args.steps + 1,
        logging_steps=1,
        per_device_train_batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
    )
    model = with_lora(model, params)
    examples = tokenize_split("train", tokenizer, conversations, args.max_seq_length).examples
    times: list[float] = []
    losses: list[float] = []

    def on_log(entry: dict[str, float]) -> None:
        times.append(time.perf_counter())
        losses.append(entry["loss"])

    original, precision, fused = loop.micro_batch, attention.attention_precision, loop.FUSED_OUTPUT_LOSS
    if not packed:  # before packing: rows padded to the longest in the batch
        loop.micro_batch = lambda batch, pad, pad_to: collate(batch, pad, pad_to)  # type: ignore[assignment]
    if not current:

        @contextlib.contextmanager
        def in_the_models_dtype(query: Any) -> Any:
            yield query.dtype

        attention.attention_precision = in_the_models_dtype
        loop.FUSED_OUTPUT_LOSS = False
    streams_before = os.environ.get(streams.STREAMS_SETTING)
    if not current:
        os.environ[streams.STREAMS_SETTING] = "1"
    try:
        loop.train(
            model,
            examples,
            params,
            pad_token_id=int(tokenizer.pad_token_id),
            device=device,
            on_log=on_log,
            compute_dtype=dtype,
        )
    finally:
        loop.micro_batch, attention.attention_precision, loop.FUSED_OUTPUT_LOSS = original, precision, fused
        if streams_before is None:
            os.environ.pop(streams.STREAMS_SETTING, None)
        else:
            os.environ[streams.STREAMS_SETTING] = streams_before
    # Tokens per step from the same seeded stream the loop drew from (one micro-batch per step).
    stream = loop._micro_batches(examples, params)
    per_step = [sum(len(examples[i].input_ids) for i in next(stream)[1]) for _ in range(args.steps + 1)]
    labels = sum(e.num_label_tokens for e in examples) / sum(len(e.input_ids) for e in examples)
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "tokens": sum(per_step[1:]),
        "seconds": times[-1] - times[0],
        "losses": losses,
        "label_fraction": labels,
    }


def run_trl(model_dir: Path, conversations: list, args: argparse.Namespace, bf16: bool) -> dict[str, Any]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    times: dict[int, float] = {}

    class StepClock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            times[state.global_step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as output:
        config = SFTConfig(
            output_dir=output,
            max_steps=args.steps + 1,
            per_device_train_batch_size=args.batch_size,
            max_length=args.max_seq_length,
            learning_rate=LEARNING_RATE,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            bf16=bf16,
            seed=42,
            disable_tqdm=True,
        )
        trainer = SFTTrainer(
            model=str(model_dir),
            args=config,
            train_dataset=Dataset.from_list([{"messages": m} for m in conversations]),
            peft_config=LoraConfig(
                r=args.lora_r,
                lora_alpha=2 * args.lora_r,
                lora_dropout=0.0,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                task_type="CAUSAL_LM",
            ),
            callbacks=[StepClock()],
        )
        trainer.train()
        logs = [e for e in trainer.state.log_history if "loss" in e and "num_tokens" in e]
    tokens = {int(e["step"]): float(e["num_tokens"]) for e in logs}
    last = args.steps + 1
    return {
        "dtype": "bfloat16 autocast over fp32 weights" if bf16 else "float32",
        "tokens": tokens[last] - tokens[1],
        "seconds": times[last] - times[1],
        "losses": [float(e["loss"]) for e in logs],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--peak-size", type=int, default=2048, help="side of the square matmul for the peak")
    parser.add_argument("--skip-trl", action="store_true", help="only the recipe")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every tool; each tool's best is kept")
    parser.add_argument("--with-padded", action="store_true", help="also the recipe on padded rows (no packing)")
    default_cache = ROOT / ".autopilot" / "models"
    if not default_cache.exists() and Path("/work/main/.autopilot/models").exists():
        default_cache = Path("/work/main/.autopilot/models")
    parser.add_argument("--cache", type=Path, default=default_cache)
    parser.add_argument("--data", type=Path, default=ROOT / "samples" / "ultrachat_sample" / "train_sft.jsonl")
    args = parser.parse_args(argv)

    try:
        import trl  # noqa: F401
    except ImportError:
        if not args.skip_trl:
            print(TRL_MISSING)
            return 2
    import torch
    from transformers import AutoConfig

    from local.platform.models import materialize, pick_dtype
    from local.platform.training.data import read_conversations

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = materialize(args.model, args.cache)
    conversations = read_conversations(args.data, training=True)
    dtype = pick_dtype("cpu")
    print(
        f"model={args.model} steps={args.steps} (+1 warm-up) batch={args.batch_size} "
        f"max_seq_length={args.max_seq_length} lora_r={args.lora_r} lr={LEARNING_RATE} "
        f"threads={torch.get_num_threads()} cpus={os.cpu_count()} recipe_dtype={dtype} "
        f"load_average={' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    runs: dict[str, Any] = {
        "recipe (packed)": lambda: run_recipe(model_dir, conversations, args, packed=True),
        "recipe (before its last levers)": lambda: run_recipe(
            model_dir, conversations, args, packed=True, current=False
        ),
    }
    if args.with_padded:
        runs["recipe (padded, before packing)"] = lambda: run_recipe(model_dir, conversations, args, packed=False)
    if not args.skip_trl:
        runs["trl SFTTrainer"] = lambda: run_trl(model_dir, conversations, args, bf16=dtype == torch.bfloat16)
    # Rounds of every tool in turn, each round in the reverse order of the one before, so a machine that
    # slows down or speeds up for a while is shared out; each tool's best round is kept (noise only slows).
    peaks = [matmul_peak(dtype, args.peak_size)]
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    for round_number in range(args.repeats):
        order = list(runs) if round_number % 2 == 0 else list(reversed(runs))
        for name in order:
            rounds[name].append(runs[name]())
        peaks.append(matmul_peak(dtype, args.peak_size))
    peak = max(peaks)
    print(
        f"matmul peak ({dtype}, {args.peak_size}^3, best of 5), before and after each round: "
        f"{' '.join(f'{p / 1e9:.0f}' for p in peaks)} GFLOP/s; fractions below use the highest, {peak / 1e9:.0f}"
    )
    results: dict[str, dict[str, Any]] = {}
    for name, tries in rounds.items():
        for r in tries:
            r["rate"] = r["tokens"] / r["seconds"]
        results[name] = max(tries, key=lambda r: r["rate"])
        results[name]["all_rates"] = [r["rate"] for r in tries]
    flops = useful_flops_per_token(AutoConfig.from_pretrained(model_dir), results["recipe (packed)"]["label_fraction"])
    print(f"useful work: {flops / 1e9:.3f} GFLOP per token")
    for name, r in results.items():
        rate = r["rate"]
        every = f"  rounds: {' '.join(f'{x:.0f}' for x in r['all_rates'])}" if args.repeats > 1 else ""
        print(
            f"{name:34s} {r['dtype']:38s} {rate:8.1f} tokens/s  {rate * flops / peak:6.1%} of peak  "
            f"({r['tokens']:.0f} tokens in {r['seconds']:.1f} s){every}"
        )
    for name, r in results.items():
        print(f"loss per step, {name}: " + " ".join(f"{v:.3f}" for v in r["losses"]))
    now = results["recipe (packed)"]["rate"]
    before = results["recipe (before its last levers)"]["rate"]
    print(f"fp32 attention on CPU, fused output layer and loss, streams: {now / before:.2f}x the recipe before them")
    if "recipe (padded, before packing)" in results:
        print(f"packing: {now / results['recipe (padded, before packing)']['rate']:.2f}x the padded recipe")
    if "trl SFTTrainer" in results:
        print(f"ratio recipe/TRL: {results['recipe (packed)']['rate'] / results['trl SFTTrainer']['rate']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
