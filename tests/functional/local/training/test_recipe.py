"""The training recipe end to end on the tiny model: progress and MLflow logging, evaluation before and
after, the saved MLflow model, and the component parameters it honours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from local.platform.models import DTYPE_SETTING
from local.platform.serving.chat_model import load_chat_model
from local.platform.training import TrainingError, TrainingResult, TrainingSpec, run_training
from tests.functional.local.training.helpers import make_spec

STEPS = 4
DTYPES = ["float32", "bfloat16"]


@pytest.fixture(scope="module", params=DTYPES)
def tracked_run(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_dir: Path,
    small_data: dict[str, Path],
) -> tuple[TrainingSpec, TrainingResult, list[dict[str, Any]]]:
    """One LoRA run logged to a SQLite MLflow store, with every progress event kept: once in each compute
    dtype, forced, so both paths run on every machine whatever its CPU."""
    folder = tmp_path_factory.mktemp(f"tracked-run-{request.param}")
    spec = make_spec(folder, tiny_model_dir, small_data, max_steps=STEPS, logging_steps=1)
    spec.mlflow_tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    spec.run_name = "tracked"
    spec.tags = {**spec.tags, "dtype": request.param}
    events: list[dict[str, Any]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DTYPE_SETTING, request.param)
        result = run_training(spec, progress=events.append)
    return spec, result, events


def test_progress_reports_every_logging_step_and_each_phase(tracked_run: Any) -> None:
    _, result, events = tracked_run
    steps = [e for e in events if "step" in e]
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1))
    for event in steps:
        assert set(event) >= {"step", "total_steps", "loss", "learning_rate", "epoch", "tokens_per_second"}
        assert event["total_steps"] == STEPS
        assert event["loss"] > 0 and event["tokens_per_second"] > 0
    phases = [e["phase"] for e in events if "phase" in e]
    assert phases == ["evaluate_before", "train", "evaluate_after", "merge", "save"]
    assert [h["step"] for h in result.history] == [float(s) for s in range(1, STEPS + 1)]


def test_metrics_record_evaluation_before_and_after(tracked_run: Any) -> None:
    spec, result, _ = tracked_run
    metrics = result.metrics
    for key in ("eval_loss_before", "eval_loss_after", "perplexity_before", "perplexity_after", "train_loss"):
        assert metrics[key] > 0, key
    assert metrics["eval_loss_before"] != metrics["eval_loss_after"]
    assert metrics["perplexity_after"] == pytest.approx(torch.tensor(metrics["eval_loss_after"]).exp().item())
    assert metrics["steps"] == STEPS
    assert metrics["train_tokens"] > 0 and metrics["tokens_per_second"] > 0
    assert f"trained in {spec.tags['dtype']} on CPU" in result.notes


def test_mlflow_run_has_params_step_metrics_and_loss_curve(tracked_run: Any) -> None:
    from mlflow.tracking import MlflowClient

    spec, result, _ = tracked_run
    client = MlflowClient(spec.mlflow_tracking_uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "tracked"
    assert run.data.tags["autopilot_run_id"] == "job-test"
    assert run.data.params["lora_r"] == "4" and run.data.params["model_name"] == "tiny-random-chat"
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in losses) == list(range(1, STEPS + 1))
    assert len(client.get_metric_history(run.info.run_id, "tokens_per_second")) == STEPS
    assert run.data.metrics["train_tokens_per_second"] == pytest.approx(result.metrics["tokens_per_second"])
    assert run.data.metrics["eval_loss_before"] == pytest.approx(result.metrics["eval_loss_before"])
    assert run.data.metrics["eval_loss_after"] == pytest.approx(result.metrics["eval_loss_after"])
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["loss_curve.png"]


def test_merged_model_differs_from_the_base_in_every_adapted_projection(tracked_run: Any, tiny_model_dir: Path) -> None:
    _, result, _ = tracked_run
    base = load_file(tiny_model_dir / "model.safetensors")
    tuned = load_file(result.model_path / "artifacts" / "hf_model" / "model.safetensors")
    assert set(tuned) == set(base)  # merged: plain weights, no adapter tensors left
    adapted = [k for k in base if k.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"))]
    assert len(adapted) == 8  # 2 layers x 4 projections
    for key in adapted:
        assert not torch.equal(base[key], tuned[key]), key
    untouched = [k for k in base if "mlp" in k or "norm" in k]
    for key in untouched:
        assert torch.equal(base[key], tuned[key]), key


def test_adapters_are_kept_in_fp32_whatever_the_compute_dtype(tracked_run: Any) -> None:
    spec, _, _ = tracked_run
    adapter = load_file(spec.output_dir / "lora_adapter" / "adapter_model.safetensors")
    assert adapter and {t.dtype for t in adapter.values()} == {torch.float32}


def test_merged_model_computes_what_the_trained_adapters_do(tracked_run: Any, tiny_model_dir: Path) -> None:
    """The served model is the trained one: the merged weights give the logits of base + adapters."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    spec, result, _ = tracked_run
    merged = AutoModelForCausalLM.from_pretrained(result.model_path / "artifacts" / "hf_model", dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, spec.output_dir / "lora_adapter")
    ids = torch.arange(1, 33).unsqueeze(0)
    with torch.inference_mode():
        expected = adapted(input_ids=ids).logits
        got = merged(input_ids=ids).logits
        with adapted.disable_adapter():
            untrained = adapted(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert (got - untrained).abs().max() > 1e-3  # the adapters changed what the model computes


def test_saved_model_loads_and_generates(tracked_run: Any) -> None:
    _, result, _ = tracked_run
    chat = load_chat_model(result.model_path)
    conversations = [
        [{"role": "user", "content": "What is the capital of Peru?"}],
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Convert 5 miles"},
        ],
    ]
    replies = chat.generate(conversations, temperature=0.0, top_p=1.0, do_sample=False, max_new_tokens=8)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    assert replies == chat.generate(conversations, temperature=0.0, top_p=1.0, do_sample=False, max_new_tokens=8)
    sampled = [
        chat.generate(conversations[:1], temperature=0.9, top_p=0.9, do_sample=True, max_new_tokens=8, seed=s)
        for s in (1, 1, 2)
    ]
    assert sampled[0] == sampled[1] != sampled[2]
    # Without a seed, sampling must go on drawing fresh numbers: repeated requests differ.
    unseeded = {
        chat.generate(conversations[:1], temperature=1.0, top_p=1.0, do_sample=True, max_new_tokens=8)[0]
        for _ in range(4)
    }
    assert len(unseeded) > 1
    assert any(replies + sampled[0])  # some text came out
    assert chat.count_tokens(conversations[0]) > chat.count_tokens("What is the capital of Peru?")


def test_saved_model_answers_the_azure_payload_through_mlflow_pyfunc(tracked_run: Any) -> None:
    import mlflow.pyfunc

    _, result, _ = tracked_run
    model = mlflow.pyfunc.load_model(str(result.model_path))
    payload = {
        "input_data": {
            "input_string": [[{"role": "user", "content": "How long should I cook quinoa?"}]],
            "parameters": {"temperature": 0.6, "top_p": 0.9, "do_sample": True, "max_new_tokens": 8},
        }
    }
    replies = model.predict(payload)
    assert isinstance(replies, list) and len(replies) == 1 and isinstance(replies[0], str)


def losses(result: TrainingResult) -> list[float]:
    return [h["loss"] for h in result.history]


def test_max_steps_and_seed_give_the_same_run_twice(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path]
) -> None:
    first = run_training(make_spec(tmp_path / "a", tiny_model_dir, small_data, max_steps=3, seed=7))
    second = run_training(make_spec(tmp_path / "b", tiny_model_dir, small_data, max_steps=3, seed=7))
    other = run_training(make_spec(tmp_path / "c", tiny_model_dir, small_data, max_steps=3, seed=8))
    assert first.metrics["steps"] == 3 and len(first.history) == 3
    assert losses(first) == losses(second)
    assert first.metrics["eval_loss_after"] == second.metrics["eval_loss_after"]
    assert losses(first) != losses(other)  # the seed matters: the comparison above is not vacuous


def test_epochs_grad_accumulation_and_logging_steps(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path]
) -> None:
    # 24 examples, batch 2 -> 12 micro-batches per epoch; accumulation 4 -> 3 optimizer steps per epoch.
    spec = make_spec(
        tmp_path,
        tiny_model_dir,
        small_data,
        max_steps=-1,
        num_train_epochs=2,
        gradient_accumulation_steps=4,
        logging_steps=2,
    )
    result = run_training(spec)
    assert result.metrics["steps"] == 6
    assert [h["step"] for h in result.history] == [2.0, 4.0, 6.0]
    assert result.history[-1]["epoch"] == pytest.approx(2.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_full_fine_tune_and_gpu_only_settings_are_reported(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path], dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DTYPE_SETTING, dtype)
    spec = make_spec(
        tmp_path,
        tiny_model_dir,
        small_data,
        apply_lora=False,
        max_steps=2,
        learning_rate=1e-3,
        apply_deepspeed=True,
        deepspeed_stage=3,
        precision="16",
        apply_ort=True,
    )
    events: list[dict[str, Any]] = []
    result = run_training(spec, progress=events.append)
    notes = " | ".join(result.notes)
    assert "apply_deepspeed (stage 3) is not applicable on CPU" in notes
    assert f"precision 16 is not applicable on CPU; trained in {dtype}" in notes
    assert "apply_ort" in notes
    assert "merge" not in [e.get("phase") for e in events]  # nothing to merge in a full fine-tune
    base = load_file(tiny_model_dir / "model.safetensors")
    tuned = load_file(result.model_path / "artifacts" / "hf_model" / "model.safetensors")
    assert {t.dtype for t in tuned.values()} == {torch.float32}  # fp32 master weights, saved as trained
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert any("mlp" in k for k in changed) and any("embed_tokens" in k for k in changed)


def test_unmerged_adapter_is_saved_beside_the_base_and_still_serves(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path]
) -> None:
    result = run_training(make_spec(tmp_path, tiny_model_dir, small_data, max_steps=2, merge_lora_weights=False))
    hf_dir = result.model_path / "artifacts" / "hf_model"
    assert (hf_dir / "adapter" / "adapter_config.json").is_file()
    assert load_file(hf_dir / "model.safetensors").keys() == load_file(tiny_model_dir / "model.safetensors").keys()
    chat = load_chat_model(result.model_path)
    assert len(chat.generate([[{"role": "user", "content": "hi"}]], max_new_tokens=4)) == 1


def test_no_test_file_holds_out_part_of_train(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path]
) -> None:
    spec = make_spec(tmp_path, tiny_model_dir, small_data, max_steps=1)
    spec.test_file = None
    result = run_training(spec)
    assert any("held out for evaluation" in note for note in result.notes)


def test_validation_file_is_used_during_training(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path]
) -> None:
    spec = make_spec(tmp_path, tiny_model_dir, small_data, max_steps=4, evaluation_strategy="steps", eval_steps=2)
    spec.validation_file = small_data["test_sft"]
    spec.mlflow_tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_training(spec)
    from mlflow.tracking import MlflowClient

    assert result.mlflow_run_id is not None
    history = MlflowClient(spec.mlflow_tracking_uri).get_metric_history(result.mlflow_run_id, "validation_loss")
    # metric_for_best_model defaults to loss (the component's default): the last step is validated too, so
    # that the final weights compete with the earlier checkpoints for "best".
    assert [m.step for m in history] == [2, 4]


def test_bad_training_data_fails_before_loading_the_model(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path]
) -> None:
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "no answer"}]}\n', encoding="utf-8")
    spec = make_spec(tmp_path, tiny_model_dir, {**small_data, "train_sft": bad})
    with pytest.raises(TrainingError, match=r"train.jsonl: 1 x last_turn_not_assistant.*line 1"):
        run_training(spec)
    assert not (tmp_path / "job" / "trained_model").exists()


def test_bad_parameters_fail_with_their_names(
    tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, Path]
) -> None:
    with pytest.raises(TrainingError, match=r"params\.lora_dropout"):
        run_training(make_spec(tmp_path, tiny_model_dir, small_data, lora_dropout=1.5))
