"""The app against the real ``chat_completion_pipeline`` 0.0.82 spec: every input it types and sends exists
there with the same type, enum and default, and the job is checked against the component actually resolved."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.config.component import ComponentParams
from shared.config.params import LOCAL_ONLY
from shared.exceptions import RejectedError
from shared.services.planning import build_plan
from shared.settings import Settings
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.support import COMPONENT_SPEC, RUN_ID, offline_platform, seed_config

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

REAL_INPUTS: dict[str, dict[str, Any]] = yaml.safe_load(COMPONENT_SPEC.read_text())["inputs"]
WIRE_TYPES = {"string": (str,), "integer": (int,), "number": (int, float)}


def plan(settings: Settings, component: Path = COMPONENT_SPEC, **training: Any) -> Any:
    config = seed_config()
    if training:
        config = config.model_copy(update={"training": config.training.model_copy(update=training)})
    platform = offline_platform(settings, component=component)
    made = build_plan(
        config,
        run_id=RUN_ID,
        config_blob="phi3-ultrachat.yaml",
        config_name="phi3-ultrachat",
        platform=platform,
        data_root=Path("."),
    )
    return platform.build_pipeline_job(made.job)


def test_every_typed_input_is_a_real_input_with_its_type_enum_and_default() -> None:
    for name, field in ComponentParams.model_fields.items():
        if name in LOCAL_ONLY:
            continue  # the local trainer's own settings, never sent to the component
        assert name in REAL_INPUTS, f"{name} is not an input of chat_completion_pipeline 0.0.82"
        real = REAL_INPUTS[name]
        annotation = field.annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if annotation is bool:
            assert (real["type"], real.get("enum")) == ("string", ["true", "false"]), name
            assert str(real["default"]).lower() == str(field.default).lower(), name
        elif typing.get_origin(annotation) is typing.Literal:
            assert [str(a) for a in typing.get_args(annotation)] == [str(e) for e in real["enum"]], name
            assert str(field.default) == str(real["default"]), name
        elif name == "finetune_config_path":
            assert real["type"] == "uri_file" and args == [str]
        else:
            expected = {int: "integer", float: "number", str: "string"}[annotation]  # type: ignore[index]
            assert real["type"] == expected, name
            assert field.default == real["default"] or float(field.default) == float(real["default"]), name


def test_every_input_the_app_sends_matches_the_real_spec(settings: Settings) -> None:
    from shared.platform.azureml.pipeline import job_to_dict

    built = plan(settings)
    serialised = job_to_dict(built.job)["jobs"]["chat_completion_pipeline"]["inputs"]
    assert set(built.inputs) <= set(REAL_INPUTS)
    for name, value in built.inputs.items():
        real = REAL_INPUTS[name]
        if real["type"] in WIRE_TYPES:
            assert isinstance(value, WIRE_TYPES[real["type"]]) and not isinstance(value, bool), (name, value)
            if real.get("enum"):
                assert str(value) in [str(e) for e in real["enum"]], (name, value)
        else:  # model and data: bound by the SDK to the declared asset type
            assert serialised[name]["type"] == real["type"], name
    assert built.notes == []  # nothing the app sends is missing from the real component


def _component_without(tmp_path: Path, drop: str = "", **enum: list[str]) -> Path:
    spec = yaml.safe_load(COMPONENT_SPEC.read_text())
    if drop:
        del spec["inputs"][drop]
    for name, values in enum.items():
        spec["inputs"][name]["enum"] = values
        spec["inputs"][name]["default"] = values[0]
    path = tmp_path / "other-version.spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_an_input_the_resolved_component_lacks_is_an_error_on_the_field_that_set_it(
    settings: Settings, tmp_path: Path
) -> None:
    older = _component_without(tmp_path, drop="metric_for_best_model")
    with pytest.raises(RejectedError) as exc:
        plan(settings, component=older, metric_for_best_model="exact")
    [issue] = exc.value.issues
    assert issue.path == "training.metric_for_best_model"
    assert "chat_completion_pipeline 0.0.82 has no input metric_for_best_model" in issue.message
    # Left at the app's default, it is simply not sent: the component applies its own.
    built = plan(settings, component=older)
    assert "metric_for_best_model" not in built.inputs
    assert "metric_for_best_model" in built.notes[0]


def test_a_value_outside_the_resolved_components_enum_is_an_error(settings: Settings, tmp_path: Path) -> None:
    narrower = _component_without(tmp_path, logging_strategy=["epoch"])
    with pytest.raises(RejectedError) as exc:
        plan(settings, component=narrower, logging_strategy="steps")
    [issue] = exc.value.issues
    assert issue.path == "training.logging_strategy"
    assert "'steps' is not one of epoch" in issue.message


def test_the_config_sets_the_remaining_real_inputs(settings: Settings) -> None:
    built = plan(
        settings,
        trust_remote_code=True,
        ignore_mismatched_sizes=True,
        metric_for_best_model="loss",
        logging_strategy="epoch",
        dataloader_num_workers=4,
        finetune_config_path="azureml://datastores/workspaceblobstore/paths/cfg/finetune_config.json",
    )
    inputs = built.inputs
    assert (inputs["trust_remote_code"], inputs["ignore_mismatched_sizes"]) == ("true", "true")
    assert (inputs["logging_strategy"], inputs["dataloader_num_workers"]) == ("epoch", 4)
    assert inputs["finetune_config_path"].type == "uri_file"
    assert inputs["finetune_config_path"].path.endswith("/cfg/finetune_config.json")
