"""The fine-tuned chat model as the endpoint serves it: load from an MLflow model directory, generate replies.

``load_chat_model`` reads the Hugging Face directory out of the MLflow model (``mlflow_model.hf_dir_of``,
without importing mlflow: the endpoint process starts faster); ``mlflow.pyfunc.load_model`` works on the same
directory through ``ChatPyfuncModel`` (in ``chat_pyfunc``), which answers the Azure ML scoring payload.

``ChatModel.generate`` takes a batch of conversations and pads on the left, so a server can group
concurrent requests into one call.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from local.platform.mlflow_model import ADAPTER_DIR, hf_dir_of
from shared.scoring import DEFAULT_PARAMETERS, ScoringParameters

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

Message = dict[str, str]


class GenerationParamError(ValueError):
    """A generation parameter is out of range; the message names it."""


def load_chat_model(mlflow_model_dir: Path, *, device: str = "cpu") -> ChatModel:
    """Load the model and tokenizer of an MLflow chat model saved by the training recipe."""
    return ChatModel.from_hf_dir(hf_dir_of(mlflow_model_dir), device=device)


def scoring_parameters(parameters: Mapping[str, Any]) -> ScoringParameters:
    """The parameters checked against the scoring contract; GenerationParamError naming the field if not."""
    try:
        return ScoringParameters.model_validate(dict(parameters))
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'parameters'}: {e['msg']}" for e in exc.errors())
        raise GenerationParamError(reasons) from None


class ChatModel:
    """A causal LM with its tokenizer and chat template; ``generate`` is thread-safe (one batch at a time)."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self._lock = threading.Lock()
        # Left padding keeps every prompt's last token at the end of the row, where generation continues.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @classmethod
    def from_hf_dir(cls, hf_dir: Path, *, device: str = "cpu") -> ChatModel:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from local.platform.models import pick_dtype

        hf_dir = Path(hf_dir)
        torch_device = torch.device(device)
        dtype = pick_dtype(torch_device)
        tokenizer = AutoTokenizer.from_pretrained(hf_dir)
        adapter = hf_dir / ADAPTER_DIR
        if (adapter / "adapter_config.json").is_file():
            from peft import PeftModel

            # Saved unmerged (merge_lora_weights false); merging once here makes every request cheaper. The
            # merge is done in fp32 and cast after: merged in bf16, small adapter updates would round away.
            model: Any = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload().to(dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=dtype)
        model.to(torch_device).eval()
        logger.info("loaded chat model from %s on %s (%s)", hf_dir, torch_device, dtype)
        return cls(model, tokenizer, torch_device)

    @property
    def stop_token_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id, self.model.generation_config.eos_token_id}
        flat: set[int] = set()
        for item in ids:
            if isinstance(item, list):
                flat.update(item)
            elif item is not None:
                flat.add(int(item))
        return sorted(flat)

    def prompt_text(self, conversation: Sequence[Message]) -> str:
        return str(self.tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True))

    def count_tokens(self, conversation: Sequence[Message] | str) -> int:
        """Tokens of a conversation's prompt (chat template and generation prompt included) or of plain text."""
        text = conversation if isinstance(conversation, str) else self.prompt_text(conversation)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self,
        conversations: list[list[Message]],
        *,
        temperature: float = DEFAULT_PARAMETERS.temperature,
        top_p: float = DEFAULT_PARAMETERS.top_p,
        do_sample: bool = DEFAULT_PARAMETERS.do_sample,
        max_new_tokens: int = DEFAULT_PARAMETERS.max_new_tokens,
        seed: int | None = None,
    ) -> list[str]:
        """One reply per conversation; the scoring contract's defaults; greedy when ``do_sample`` is false
        or ``temperature`` is 0."""
        import torch

        params = scoring_parameters(
            {
                "temperature": temperature,
                "top_p": top_p,
                "do_sample": do_sample,
                "max_new_tokens": max_new_tokens,
                "seed": seed,
            }
        )
        if not conversations:
            return []
        texts = [self.prompt_text(conversation) for conversation in conversations]
        sampling = params.sampling
        options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": sampling,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.stop_token_ids,
        }
        if sampling:
            options.update(temperature=float(temperature), top_p=float(top_p))
        else:
            # Unset the sampling knobs a generation_config may carry, so greedy decoding is not warned about.
            options.update(temperature=None, top_p=None, top_k=None)
        with self._lock:
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            # A seed makes this one call reproducible without touching the process's random stream; without
            # one, the stream must advance, or every sampled request would get the same answer.
            seeded = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
            with seeded, torch.inference_mode():
                if seed is not None:
                    torch.manual_seed(seed % 2**64)  # torch takes 64-bit unsigned seeds
                output = self.model.generate(**batch, **options)
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
