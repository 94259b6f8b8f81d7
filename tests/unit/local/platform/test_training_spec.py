"""TrainingSpec/TrainingResult JSON round trips and parameter checking before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.platform.training import TrainingError, TrainingResult, TrainingSpec
from shared.config.params import APP_DEFAULTS


def make_spec(**params: object) -> TrainingSpec:
    return TrainingSpec(
        job_name="job-1",
        model_name="tiny-random-chat",
        model_dir=Path("/models/tiny"),
        output_dir=Path("/jobs/job-1"),
        params={**APP_DEFAULTS, **params},
        train_file=Path("/data/train.jsonl"),
        test_file=Path("/data/test.jsonl"),
        mlflow_tracking_uri="sqlite:////ws/mlflow.db",
        experiment_name="exp",
        tags={"autopilot_run_id": "job-1"},
    )


def test_spec_round_trips_through_json() -> None:
    spec = make_spec(apply_lora=True, lora_r=4)
    again = TrainingSpec.from_json(spec.to_json())
    assert again == spec
    assert isinstance(again.model_dir, Path) and again.validation_file is None


def test_spec_from_json_refuses_unknown_fields() -> None:
    text = make_spec().to_json().replace('"device"', '"devise"')
    with pytest.raises(TrainingError, match="devise"):
        TrainingSpec.from_json(text)


def test_typed_params_accepts_the_component_wire_format() -> None:
    typed = make_spec(apply_lora="true", deepspeed_stage="3", precision=16, merge_lora_weights="false").typed_params()
    assert typed.apply_lora is True
    assert typed.deepspeed_stage == 3
    assert typed.precision == "16"
    assert typed.merge_lora_weights is False


def test_typed_params_names_every_bad_field() -> None:
    with pytest.raises(TrainingError) as caught:
        make_spec(lora_r=0, lr_scheduler_type="zigzag", bogus=1).typed_params()
    message = str(caught.value)
    assert "params.lora_r" in message
    assert "params.lr_scheduler_type" in message
    assert "params.bogus" in message


def test_result_round_trips_through_json() -> None:
    result = TrainingResult(
        metrics={"eval_loss_before": 2.0, "eval_loss_after": 1.0},
        notes=["trained in float32 on CPU"],
        model_path=Path("/jobs/job-1/trained_model"),
        mlflow_run_id="abc",
        history=[{"step": 1.0, "loss": 2.5}],
    )
    assert TrainingResult.from_json(result.to_json()) == result
