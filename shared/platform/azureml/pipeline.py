"""The fine-tuning pipeline job: the seed's ``@pipeline`` around ``chat_completion_pipeline``, from a JobRequest.

Inputs come from the effective parameters in the component's wire types (``as_component_inputs``: booleans
"true"/"false", the DeepSpeed stage as a string). They are checked against the inputs of the component version
actually resolved (its type, enum and bounds), so a newer component keeps working: an input it does not
declare is dropped with a note while it holds the app's default, and is a rejection on the config field that
set it otherwise (someone asked for a setting this component cannot apply).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import yaml
from azure.ai.ml import Input
from azure.ai.ml.dsl import pipeline
from azure.ai.ml.entities import PipelineJob, PipelineJobSettings

from shared.config.params import APP_DEFAULTS, as_component_inputs, config_path
from shared.exceptions import FieldIssue, RejectedError
from shared.platform.azureml.compute import SERVERLESS
from shared.platform.port import JobRequest

NODE_NAME = "chat_completion_pipeline"
OUTPUT_NAME = "trained_model"  # register from azureml://jobs/<job>/outputs/trained_model
COMPUTE_INPUTS = ("compute_model_import", "compute_preprocess", "compute_finetune", "compute_model_evaluation")
# With serverless compute the GPU steps get the SKU; import and preprocess keep the component's CPU default.
SERVERLESS_SKU_INPUTS = ("instance_type_finetune", "instance_type_model_evaluation")


@dataclass
class BuiltJob:
    job: PipelineJob
    inputs: dict[str, Any]  # what the component node receives, by input name
    component: Any  # the component the node calls (registry or offline spec)
    notes: list[str] = field(default_factory=list)


def component_inputs(request: JobRequest) -> dict[str, Any]:
    """Every input the app would give the component, before intersecting with what it declares."""
    inputs: dict[str, Any] = {"task_name": "ChatCompletion", **as_component_inputs(request.params.model_dump())}
    inputs["mlflow_model_path"] = request.foundation_model.id
    for name in COMPUTE_INPUTS:
        inputs[name] = request.compute.cluster
    if request.compute.cluster == SERVERLESS:
        for name in SERVERLESS_SKU_INPUTS:
            inputs[name] = request.compute.size
    inputs["number_of_gpu_to_use_finetuning"] = request.compute.gpus_per_node
    inputs["num_nodes_finetune"] = request.params.num_nodes_finetune
    if request.params.finetune_config_path:
        inputs["finetune_config_path"] = Input(type="uri_file", path=request.params.finetune_config_path)
    inputs["train_file_path"] = Input(type="uri_file", path=request.train_data)
    if request.validation_data:
        inputs["validation_file_path"] = Input(type="uri_file", path=request.validation_data)
    if request.test_data:
        inputs["test_file_path"] = Input(type="uri_file", path=request.test_data)
    return inputs


_NUMBER_TYPES = {"integer": (int,), "number": (int, float)}


def _input_problem(spec: Any, value: Any) -> str | None:
    """Why ``value`` does not fit the component input ``spec`` (type, enum, min, max), or None."""
    kind = str(getattr(spec, "type", "") or "")
    enum = [str(e) for e in (getattr(spec, "enum", None) or [])]
    if enum and str(value) not in enum:
        return f"{value!r} is not one of {', '.join(enum)} (the component's enum)"
    if kind in _NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, _NUMBER_TYPES[kind]):
            return f"{value!r} is not of the component's type {kind}"
        low, high = getattr(spec, "min", None), getattr(spec, "max", None)
        if low is not None and value < low:
            return f"{value} is below the component's minimum {low}"
        if high is not None and value > high:
            return f"{value} is above the component's maximum {high}"
    if kind == "string" and not isinstance(value, str):
        return f"{value!r} is not text, the component's type string"
    return None


def check_params_against(component: Any, request: JobRequest, wanted: dict[str, Any]) -> list[str]:
    """Rejects parameters the resolved component cannot take; returns the names of unsent app defaults."""
    declared = component.inputs
    values = request.params.model_dump()
    issues: list[FieldIssue] = []
    version = f"{request.component_name} {getattr(component, 'version', '')}".strip()
    unsent: list[str] = []
    for name, value in wanted.items():
        if name not in values:
            continue  # compute, data and model inputs: built by the app, not parameters
        if name not in declared:
            if value == as_component_inputs({name: APP_DEFAULTS.get(name)}).get(name):
                unsent.append(name)
            else:
                issues.append(FieldIssue(config_path(name), f"{version} has no input {name}; remove the setting"))
            continue
        if name == "finetune_config_path":
            continue  # a file Input; its path was checked as a URI in the config
        problem = _input_problem(declared[name], value)
        if problem:
            issues.append(FieldIssue(config_path(name), f"{problem} in {version}"))
    if issues:
        raise RejectedError(issues)
    return unsent


def build_pipeline_job(request: JobRequest, component: Any) -> BuiltJob:
    """The PipelineJob the seed would submit, named after the run so a retry cannot make a second one."""
    declared = set(component.inputs)
    wanted = component_inputs(request)
    check_params_against(component, request, wanted)
    inputs = {k: v for k, v in wanted.items() if k in declared}
    dropped = sorted(k for k in wanted if k not in declared)
    notes = []
    if dropped:
        notes.append(
            f"inputs not declared by {request.component_name} {getattr(component, 'version', '')} and not passed: "
            + ", ".join(dropped)
        )
    for required in ("train_file_path", "mlflow_model_path"):
        if required not in declared:
            notes.append(f"the component declares no {required}: the job cannot read its model or data")

    def chat_finetune() -> dict[str, Any]:
        chat_completion_pipeline = component(**inputs)
        return {OUTPUT_NAME: chat_completion_pipeline.outputs.mlflow_model_folder}

    # The seed's @pipeline, applied as a call so the names come from the request.
    make_job = pipeline(
        chat_finetune,
        name="autopilot_chat_finetune",
        display_name=request.display_name,
        experiment_name=request.experiment_name,
    )
    job = make_job()
    job.name = request.name
    job.display_name = request.display_name
    job.experiment_name = request.experiment_name
    job.tags = dict(request.tags)
    if job.settings is None:
        job.settings = PipelineJobSettings()
    job.settings.force_rerun = True  # the seed: no cached step results
    job.settings.continue_on_step_failure = False
    return BuiltJob(job=job, inputs=inputs, component=component, notes=notes)


def job_to_dict(job: PipelineJob) -> dict[str, Any]:
    """The job as the SDK serialises it (its YAML form)."""
    data: dict[str, Any] = job._to_dict()
    return data


def job_to_yaml(job: PipelineJob, *, collapse_component: str | None = None) -> str:
    """The job as YAML. ``collapse_component`` replaces the inline component definition by that reference,
    as a job built from a registry component shows it (offline specs are loaded inline)."""
    if collapse_component is None:
        buffer = io.StringIO()
        job.dump(buffer)
        return buffer.getvalue()
    data = job_to_dict(job)
    for node in (data.get("jobs") or {}).values():
        if isinstance(node, dict) and isinstance(node.get("component"), dict):
            node["component"] = collapse_component
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
