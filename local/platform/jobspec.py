"""A local job's ``spec.json`` (``JobSpec``): everything its process needs, written once at submit (no secrets:
the webhook key reaches the process through its environment only).

A restart sets ``training.resume``, so the recipe continues from its latest checkpoint; nothing else changes
it after submit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from local.common.statefiles import StateFile
from local.platform.eventpost import LOCAL_TOPIC
from local.platform.workspace import Workspace
from shared.platform.port import JobRequest

SPEC_FILE = "spec.json"
OUTPUT_DIR = "output"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FoundationModelRef(_Record):
    name: str
    version: str
    id: str


class ComputeRef(_Record):
    cluster: str
    gpus_per_node: int | None = None


class JobTraining(_Record):
    """The recipe's ``TrainingSpec`` but the model directory, which the job process materialises."""

    job_name: str
    model_name: str
    output_dir: str
    params: dict[str, Any]  # the effective ComponentParams as JSON; the recipe checks them (typed_params)
    train_file: str
    validation_file: str | None = None
    test_file: str | None = None
    device: str = "cpu"
    mlflow_tracking_uri: str
    experiment_name: str
    run_name: str
    tags: dict[str, str]
    resume: bool = False  # a restarted attempt continues from the latest complete checkpoint


class JobSpec(StateFile):
    schema_version: Literal[1] = 1
    job_name: str
    display_name: str
    experiment_name: str
    tags: dict[str, str]
    foundation_model: FoundationModelRef
    compute: ComputeRef
    models_cache: str
    artifact_root: str
    topic: str  # the Event Grid topic the job's events name
    submitted_at: datetime
    workdir: str
    training: JobTraining

    @classmethod
    def for_request(cls, request: JobRequest, workspace: Workspace, *, topic: str) -> JobSpec:
        directory = workspace.job_dir(request.name)
        model = request.foundation_model
        training = JobTraining(
            job_name=request.name,
            model_name=model.name,
            output_dir=str(directory / OUTPUT_DIR),
            params=request.params.model_dump(mode="json"),  # the typed inputs, as the job will read them
            train_file=request.train_data,
            validation_file=request.validation_data,
            test_file=request.test_data,
            device="cuda" if request.compute.cluster.lower() == "local-cuda" else "cpu",
            mlflow_tracking_uri=workspace.tracking_uri,
            experiment_name=request.experiment_name,
            run_name=request.name,
            tags=dict(request.tags),
        )
        return cls(
            job_name=request.name,
            display_name=request.display_name,
            experiment_name=request.experiment_name,
            tags=dict(request.tags),
            foundation_model=FoundationModelRef(name=model.name, version=model.version, id=model.id),
            compute=ComputeRef(cluster=request.compute.cluster, gpus_per_node=request.compute.gpus_per_node),
            models_cache=str(workspace.models_cache),
            artifact_root=str(workspace.artifacts),
            topic=topic or LOCAL_TOPIC,
            submitted_at=datetime.now(UTC),
            workdir=str(workspace.workdir.resolve()),
            training=training,
        )


def read_spec(directory: Path) -> JobSpec | None:
    return JobSpec.load(directory / SPEC_FILE)


def write_spec(directory: Path, spec: JobSpec) -> None:
    spec.save(directory / SPEC_FILE)
