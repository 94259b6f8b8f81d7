"""The data commands' edges: ``prepare-dataset --upload`` without a workspace, ``plan`` saying when it could
not check the data paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopilot.main import main
from tests.unit.shared.azureml import SDK_WARNINGS
from tests.unit.shared.azureml.support import COMPONENT_SPEC, MODEL_SPEC, SEED_SAMPLE

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "ultrachat_sample"
OFFLINE = ["--platform", "azureml", "--component", str(COMPONENT_SPEC), "--model-spec", str(MODEL_SPEC)]


@pytest.fixture(autouse=True)
def no_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AUTOPILOT_PLATFORM", "AZUREML_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        monkeypatch.delenv(key, raising=False)


def test_upload_without_a_workspace_names_the_settings_and_keeps_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ultrachat_200k_dataset"
    assert main(["prepare-dataset", "--dataset", str(SAMPLE), "--out", str(out), "--upload"]) == 1
    err = capsys.readouterr().err
    assert "prepare-dataset --upload: the Azure ML workspace is not configured: set AZUREML_SUBSCRIPTION_ID" in err
    assert "Traceback" not in err
    assert (out / "train_sft.jsonl").is_file()  # prepared all the same; the upload can be rerun


def test_an_offline_plan_says_it_did_not_check_the_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(SEED_SAMPLE), *OFFLINE]) == 0
    out = capsys.readouterr().out
    assert (
        "  data.train: azureml://datastores/workspaceblobstore/paths/ultrachat_200k_dataset/train_sft.jsonl: "
        "not checked: offline: the plan makes no workspace call" in out
    )
    assert main(["plan", str(SEED_SAMPLE), *OFFLINE, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["data"]
    assert {(d["field"], d["outcome"]) for d in data} == {("data.train", "not_checked"), ("data.test", "not_checked")}
