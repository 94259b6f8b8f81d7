"""The local adapter's submit-time checks: models, compute, data (no processes started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.platform import checks
from local.platform.adapter import LocalPlatform
from shared.exceptions import RejectedError
from shared.platform.port import ComputeRequest
from shared.settings import Settings


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalPlatform:
    # No GPU here, and the test must not depend on whether torch would find one.
    monkeypatch.setattr(checks, "cuda_available", lambda: False)
    (tmp_path / "data").mkdir()
    return LocalPlatform(
        Settings.from_env({"AUTOPILOT_WORKDIR": str(tmp_path / "work"), "AUTOPILOT_DATA_ROOT": str(tmp_path / "data")})
    )


def paths_of(exc: pytest.ExceptionInfo[RejectedError]) -> list[str]:
    return [i.path for i in exc.value.issues]


def test_foundation_models_carry_registry_style_tags(platform: LocalPlatform) -> None:
    model = platform.get_foundation_model("SmolLM2-135M-Instruct", "latest", "azureml")
    assert model.id == "local://models/SmolLM2-135M-Instruct/versions/1"
    assert {"finetune_compute_allow_list", "inference_compute_allow_list", "model_specific_defaults"} <= set(model.tags)
    assert platform.get_foundation_model("tiny-random-chat", "1", "azureml").version == "1"


def test_unknown_model_lists_the_available_ones(platform: LocalPlatform) -> None:
    with pytest.raises(RejectedError) as exc:
        platform.get_foundation_model("Phi-3-mini-4k-instruct", "latest", "azureml")
    assert paths_of(exc) == ["model.name"]
    assert "SmolLM2-135M-Instruct" in str(exc.value) and "tiny-random-chat" in str(exc.value)
    with pytest.raises(RejectedError) as exc:
        platform.get_foundation_model("tiny-random-chat", "7", "azureml")
    assert paths_of(exc) == ["model.version"]


def test_check_compute(platform: LocalPlatform) -> None:
    info = platform.check_compute(ComputeRequest("LOCAL-CPU", None, None), ["Local-Cpu"])
    assert (info.cluster, info.gpus_per_node, info.notes) == ("local-cpu", 0, ())
    noted = platform.check_compute(ComputeRequest("local-cpu", "Standard_NC6", 2, nodes=2), None)
    assert len(noted.notes) == 3
    with pytest.raises(RejectedError) as exc:
        platform.check_compute(ComputeRequest("gpu-cluster", None, None), None)
    assert paths_of(exc) == ["compute.cluster"] and "available: local-cpu" in str(exc.value)
    with pytest.raises(RejectedError) as exc:
        platform.check_compute(ComputeRequest("local-cuda", None, None), None)
    assert "available: local-cpu" in str(exc.value)
    with pytest.raises(RejectedError) as exc:
        platform.check_compute(ComputeRequest("local-cpu", None, None), ["local-cuda"])
    assert "finetune_compute_allow_list" in str(exc.value)


def test_check_inference_compute(platform: LocalPlatform) -> None:
    assert platform.check_inference_compute("", None) == "local-cpu"
    assert platform.check_inference_compute("Local-CPU", ["local-cpu"]) == "local-cpu"
    with pytest.raises(RejectedError) as exc:
        platform.check_inference_compute("Standard_NC24ads_A100_v4", None)
    assert paths_of(exc) == ["deployment.instance_type"]
    with pytest.raises(RejectedError) as exc:
        platform.check_inference_compute("local-cpu", ["local-cuda"])
    assert "inference_compute_allow_list" in str(exc.value)


def _write(path: Path, rows: list[list[dict[str, str]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows), encoding="utf-8")


GOOD = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
ENDS_WITH_USER = [[{"role": "user", "content": "hi"}]]


def test_check_data_resolves_paths_under_the_data_root(platform: LocalPlatform) -> None:
    root = platform.settings.data_root
    _write(root / "d" / "train.jsonl", GOOD)
    _write(root / "d" / "test.jsonl", ENDS_WITH_USER)  # fine outside training
    resolved = platform.check_data({"train": "d/train.jsonl", "test": (root / "d" / "test.jsonl").as_uri()})
    assert resolved == {"train": str(root / "d" / "train.jsonl"), "test": str(root / "d" / "test.jsonl")}


def test_check_data_names_every_bad_field(platform: LocalPlatform, tmp_path: Path) -> None:
    root = platform.settings.data_root
    _write(root / "train.jsonl", ENDS_WITH_USER)
    _write(tmp_path / "outside.jsonl", GOOD)
    with pytest.raises(RejectedError) as exc:
        platform.check_data(
            {
                "train": "train.jsonl",
                "validation": str(tmp_path / "outside.jsonl"),
                "test": "azureml://datastores/x/paths/test.jsonl",
            }
        )
    issues = {i.path: i.message for i in exc.value.issues}
    assert set(issues) == {"data.train", "data.validation", "data.test"}
    assert "last_turn_not_assistant" in issues["data.train"]
    assert "under the data root" in issues["data.validation"]
    assert "azureml" in issues["data.test"]
    with pytest.raises(RejectedError) as exc:
        platform.check_data({"train": "missing.jsonl"})
    assert paths_of(exc) == ["data.train"] and "not found" in str(exc.value)


def test_quota_checks_are_reported_as_not_applicable(platform: LocalPlatform) -> None:
    from shared.platform.port import CapacityOutcome, CapacityRequest

    request = ComputeRequest("local-cpu", None, None, 1)
    with_endpoint = platform.check_capacity(CapacityRequest(request, "local-cpu", "local-cpu", 1))
    assert [(c.path, c.outcome) for c in with_endpoint] == [
        ("compute.cluster", CapacityOutcome.NOT_APPLICABLE),
        ("deployment.instance_count", CapacityOutcome.NOT_APPLICABLE),
    ]
    assert all("local platform" in c.message for c in with_endpoint)
    assert len(platform.check_capacity(CapacityRequest(request, "local-cpu", None))) == 1
