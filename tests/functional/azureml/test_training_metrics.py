"""Training metrics on Azure: a real MLflow tracking server (``mlflow server`` on a free port, a SQLite store)
holds a pipeline job's runs as Azure ML lays them out (the job's run, the ``chat_completion_pipeline`` node under
it, its steps under that, linked by ``mlflow.parentRunId``) with the metric names the fine-tune step logs
(shared/platform/azureml/training_metrics.py says where they come from). The Azure ML adapter reads them over
the server's REST API, as azureml-mlflow does against a workspace, through ``get_job``, and the reconcile
carries them into the run's metrics, history and status blob."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shared.config.model import TrainingConfig
from shared.ledger.record import RunRecord
from shared.naming import app_tags, run_status_blob_name
from shared.platform.azureml.adapter import AzureMLPlatform
from shared.platform.azureml.clients import AzureClients
from shared.platform.azureml.training_metrics import read_training_metrics
from shared.services.lifecycle import quality_gate_failure
from shared.services.reconcile import reconcile
from shared.settings import Settings
from shared.states import RunState
from tests.configs import config_bytes
from tests.fakes import FakeClock, make_store
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.azure_fakes import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeWorkspace

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

STEPS = ("model_import", "preprocess", "finetune", "model_converter", "validation")
LOSS_EVERY = 10  # the component's logging_steps default
EVAL_AT = (100, 200, 300)  # evaluation_strategy epoch, three epochs of 100 steps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--default-artifact-root",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=(root / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a loaded machine starts it slowly; this waits for it, it times nothing
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def pipeline_job(url: str) -> tuple[str, str]:
    """A finished chat_completion pipeline job's runs as Azure ML records them; returns (job run id, finetune's)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment(f"chat_completion_Phi-3-mini-4k-instruct-{time.monotonic_ns()}")
    root = client.create_run(experiment, run_name="pipeline-job", tags={"azureml.runType": "azureml.PipelineRun"})
    node = client.create_run(
        experiment, run_name="chat_completion_pipeline", tags={"mlflow.parentRunId": root.info.run_id}
    )
    step_ids = {}
    for step in STEPS:
        run = client.create_run(experiment, run_name=step, tags={"mlflow.parentRunId": node.info.run_id})
        step_ids[step] = run.info.run_id
    finetune = step_ids["finetune"]
    for step in range(LOSS_EVERY, 301, LOSS_EVERY):
        loss = 2.0 - step / 300  # 1.967 .. 1.0
        for target in (finetune, root.info.run_id):  # showMetricsAtRoot: the root run gets them too
            client.log_metric(target, "loss", loss, step=step)
            client.log_metric(target, "learning_rate", 2e-5 * (1 - step / 300), step=step)
            client.log_metric(target, "grad_norm", 0.5, step=step)
            client.log_metric(target, "epoch", step / 100, step=step)
    for step, eval_loss in zip(EVAL_AT, (1.8, 1.5, 1.25), strict=True):
        client.log_metric(finetune, "eval_loss", eval_loss, step=step)
        client.log_metric(finetune, "eval_runtime", 12.5, step=step)
        client.log_metric(finetune, "eval_samples_per_second", 8.0, step=step)
    for key, value in {
        "train_loss": 1.48,
        "train_runtime": 3600.0,
        "train_samples_per_second": 2.2,
        "train_steps_per_second": 0.083,
        "total_flos": 1.5e16,
    }.items():
        client.log_metric(finetune, key, value, step=300)
    # A step that logs its own loss-less metrics must not be taken for the fine-tune step.
    client.log_metric(step_ids["validation"], "rows", 200.0)
    for run in (*step_ids.values(), node.info.run_id, root.info.run_id):
        client.set_terminated(run, "FINISHED")
    return root.info.run_id, finetune


def settings() -> Settings:
    return Settings.from_env(
        {
            "AUTOPILOT_PLATFORM": "azureml",
            "AZUREML_SUBSCRIPTION_ID": SUBSCRIPTION,
            "AZUREML_RESOURCE_GROUP": RESOURCE_GROUP,
            "AZUREML_WORKSPACE_NAME": WORKSPACE,
        }
    )


def adapter(workspace: FakeWorkspace, tracking_uri: str) -> AzureMLPlatform:
    clients = AzureClients(
        settings(),
        credential=object(),  # type: ignore[arg-type]
        workspace=workspace.client,
        tracking_uri=tracking_uri,
    )
    return AzureMLPlatform(settings(), clients=clients)


def finished_job(name: str, run_id: str) -> Any:
    return SimpleNamespace(name=name, status="Completed", tags=app_tags(run_id, "team/phi3.yaml"), studio_url=None)


def test_the_adapter_reads_the_finetune_steps_series_from_the_tracking_server(tracking_server: str) -> None:
    job, finetune = pipeline_job(tracking_server)
    workspace = FakeWorkspace()
    workspace.jobs[job] = finished_job(job, "team-phi3-1234abcd")
    info = adapter(workspace, tracking_server).get_job(job)
    assert info.metrics["eval_loss_after"] == 1.25
    assert info.metrics["eval_loss_before"] == 1.8 and info.metrics["eval_loss_before_step"] == 100
    assert info.metrics["train_loss"] == 1.48 and info.metrics["train_seconds"] == 3600.0
    assert info.metrics["steps"] == 300 and info.metrics["total_flos"] == 1.5e16
    assert [p["step"] for p in info.history] == list(range(LOSS_EVERY, 301, LOSS_EVERY))
    assert info.history[0]["loss"] == pytest.approx(2.0 - 10 / 300)
    assert [p.get("validation_loss") for p in info.history if "validation_loss" in p] == [1.8, 1.5, 1.25]
    from mlflow import MlflowClient

    assert read_training_metrics(MlflowClient(tracking_uri=tracking_server), job).step_run == finetune


def test_a_long_curve_is_thinned_keeping_every_evaluation(tracking_server: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_server)
    experiment = client.create_experiment(f"long-{time.monotonic_ns()}")
    root = client.create_run(experiment, run_name="pipeline-job")
    step = client.create_run(experiment, run_name="finetune", tags={"mlflow.parentRunId": root.info.run_id})
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric("loss", 3.0 - i / 1000, now, i) for i in range(1, 1001)]
    metrics += [Metric("eval_loss", 2.0 - i / 10_000, now, i) for i in (333, 667, 1000)]
    client.log_batch(step.info.run_id, metrics=metrics)
    found = read_training_metrics(client, root.info.run_id)
    assert 40 <= len(found.history) <= 43
    assert found.history[0]["step"] == 1 and found.history[-1]["step"] == 1000
    assert [p["step"] for p in found.history if "validation_loss" in p] == [333, 667, 1000]


def test_reconcile_carries_the_series_into_the_run_and_its_status_blob(tracking_server: str) -> None:
    job, _ = pipeline_job(tracking_server)
    workspace = FakeWorkspace()
    run = "team-phi3-1234abcd"
    workspace.jobs[job] = finished_job(job, run)
    platform = adapter(workspace, tracking_server)
    store, _, status = make_store(FakeClock())
    store.create(
        run, config_blob="team/phi3.yaml", config_name="phi3", content=b"x", config_etag=None, platform="azureml"
    )

    def submitted(r: RunRecord) -> None:
        r.job_name = job
        r.model_name = "phi3-team"
        r.links = platform.links(job, "ft-team-phi3-1234abcd")

    store.advance(run, RunState.SUBMITTED, submitted)
    reconcile(store, platform, deploy_timeout=timedelta(minutes=60))
    record = store.get(run)
    assert record is not None and record.state == RunState.REGISTERED  # no config: deployment is not asked for
    assert record.metrics["eval_loss_after"] == 1.25 and len(record.history) == 30
    blob = status.blobs[run_status_blob_name(run)]
    assert blob["metrics"]["eval_loss_before"] == 1.8
    assert blob["history"][-1] == {"step": 300.0, "loss": 1.0, "validation_loss": 1.25}
    wsid = f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{RESOURCE_GROUP}/workspaces/{WORKSPACE}"
    assert blob["links"]["job"] == f"https://ml.azure.com/runs/{job}?wsid={wsid}"
    assert blob["links"]["endpoint"] == (
        "https://ml.azure.com/endpoints/realtime/ft-team-phi3-1234abcd/detail?wsid="
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
    )
    # The quality gate reads these metrics as it reads the local platform's.
    import yaml

    raw = yaml.safe_load(config_bytes())
    passing = TrainingConfig.model_validate(
        {
            **raw,
            "deployment": {**raw["deployment"], "quality_gate": {"max_eval_loss": 1.3, "require_improvement": True}},
        }
    )
    failing = TrainingConfig.model_validate(
        {**raw, "deployment": {**raw["deployment"], "quality_gate": {"max_eval_loss": 1.2}}}
    )
    assert quality_gate_failure(record, passing) is None
    assert quality_gate_failure(record, failing) == "quality gate: eval loss 1.2500 is above max_eval_loss 1.2"


def test_a_job_without_tracking_reports_no_metrics_and_still_completes() -> None:
    workspace = FakeWorkspace()  # its workspaces.get() reports no MLflow tracking URI
    workspace.jobs["job-1"] = finished_job("job-1", "team-phi3-1234abcd")
    clients = AzureClients(settings(), credential=object(), workspace=workspace.client)  # type: ignore[arg-type]
    info = AzureMLPlatform(settings(), clients=clients).get_job("job-1")
    assert info.status.value == "Completed" and info.metrics == {} and info.history == []
