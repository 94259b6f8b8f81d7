"""SmolLM2 for real: materialise it from the GGUF, train 3 LoRA steps on the sample, generate a reply."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from safetensors import safe_open

from local.platform.models import SMOLLM2, materialize
from local.platform.serving.chat_model import load_chat_model
from local.platform.training import TrainingSpec, run_training
from shared.config.params import APP_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "ultrachat_sample"


@pytest.mark.slow
def test_smollm2_trains_three_steps_and_answers(tmp_path: Path) -> None:
    # AUTOPILOT_TEST_MODEL_CACHE lets a developer reuse a built model (~1 min to build from the GGUF).
    cache = Path(os.environ.get("AUTOPILOT_TEST_MODEL_CACHE") or tmp_path / "models")
    model_dir = materialize(SMOLLM2, cache)
    assert (model_dir / "chat_template.jinja").is_file()
    with safe_open(model_dir / "model.safetensors", framework="pt") as weights:
        names = set(weights.keys())
    # 30 layers of 9 tensors, 2 embeddings-level tensors; the output layer is tied to the embedding.
    assert len(names) == 272 and "lm_head.weight" not in names

    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join((SAMPLE / "test_sft.jsonl").read_text().splitlines(keepends=True)[:4]))
    spec = TrainingSpec(
        job_name="slow-smollm2",
        model_name=SMOLLM2,
        model_dir=model_dir,
        output_dir=tmp_path / "job",
        params={
            **APP_DEFAULTS,
            "apply_lora": True,
            "lora_r": 8,
            "lora_alpha": 16,
            "learning_rate": 2e-4,
            "max_steps": 3,
            "logging_steps": 1,
            "max_seq_length": 256,
        },
        train_file=SAMPLE / "train_sft.jsonl",
        test_file=test_file,
    )
    result = run_training(spec)
    assert result.metrics["steps"] == 3
    # A real instruct model already knows chat: far below a random model's ~10.8 (ln of the vocabulary).
    assert result.metrics["eval_loss_before"] < 4.0
    assert result.metrics["eval_loss_after"] < 4.0

    chat = load_chat_model(result.model_path)
    reply = chat.generate(
        [[{"role": "user", "content": "What is the capital of France?"}]],
        temperature=0.0,
        top_p=1.0,
        do_sample=False,
        max_new_tokens=24,
    )[0]
    assert "Paris" in reply
