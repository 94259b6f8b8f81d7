"""Training config: parsing hostile bytes, strict validation with field paths, precedence, the schema."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from shared.config.loader import MAX_CONFIG_BYTES, load_config, parse_document
from shared.config.params import APP_DEFAULTS, as_component_inputs, resolve
from shared.config.schema import SCHEMA_PATH, render
from shared.exceptions import ConfigError, ModelTagError

ROOT = Path(__file__).resolve().parents[3]
MINIMAL = {
    "model": {"name": "Phi-3-mini-4k-instruct"},
    "data": {"train": "data/train_sft.jsonl"},
    "compute": {"cluster": "gpu-cluster"},
}


def issues_of(data: bytes) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(data)
    return {i.path: i.message for i in info.value.issues}


def dump(**sections: object) -> bytes:
    return yaml.safe_dump({**MINIMAL, **sections}).encode()


@pytest.mark.parametrize("sample", sorted((ROOT / "samples").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_samples_are_valid(sample: Path) -> None:
    load_config(sample.read_bytes())


def test_seed_sample_reproduces_the_notebook() -> None:
    config = load_config((ROOT / "samples" / "phi3-ultrachat.yaml").read_bytes())
    values = resolve(config, {}).values()
    assert values["num_train_epochs"] == 3 and values["learning_rate"] == 5e-6
    assert values["lr_scheduler_type"] == "cosine"
    assert values["apply_lora"] is True and values["apply_deepspeed"] is True and values["deepspeed_stage"] == 2
    assert config.deployment.request_timeout_ms == 90000 and config.deployment.liveness_initial_delay_s == 600
    assert config.deployment.smoke_test.parameters.temperature == 0.6


def test_minimal_config_gets_defaults() -> None:
    config = load_config(dump())
    assert config.model.version == "latest" and config.cleanup.idle_after_minutes == 60
    assert config.deployment.request_timeout_ms == 90000


@pytest.mark.parametrize(
    ("sections", "path", "fragment"),
    [
        ({"training": {"learning_rate": 0}}, "training.learning_rate", "greater than 0"),
        ({"training": {"learning_rate": -1e-5}}, "training.learning_rate", "greater than 0"),
        ({"training": {"num_train_epochs": "three"}}, "training.num_train_epochs", "whole number"),
        ({"training": {"max_steps": 0}}, "training.max_steps", "-1"),
        ({"training": {"lr_scheduler_type": "exp"}}, "training.lr_scheduler_type", "linear"),
        ({"optimization": {"lora": {"r": 0}}}, "optimization.lora.r", "greater than or equal to 1"),
        ({"optimization": {"deepspeed": {"stage": 1}}}, "optimization.deepspeed.stage", "2 or 3"),
        ({"optimization": {"deepspeed": {"stage": "4"}}}, "optimization.deepspeed.stage", "2 or 3"),
        ({"optimization": {"precision": "8"}}, "optimization.precision", "'32' or '16'"),
        ({"deployment": {"endpoint_name": "ab"}}, "deployment.endpoint_name", "3-32"),
        ({"deployment": {"endpoint_name": "x" * 33}}, "deployment.endpoint_name", "3-32"),
        ({"deployment": {"endpoint_name": "9lives"}}, "deployment.endpoint_name", "start with a letter"),
        ({"deployment": {"endpoint_name": "ends-"}}, "deployment.endpoint_name", "hyphen"),
        ({"deployment": {"request_timeout_ms": 180001}}, "deployment.request_timeout_ms", "180000"),
        (
            {"deployment": {"smoke_test": {"messages": [{"role": "bot", "content": "x"}]}}},
            "deployment.smoke_test.messages[0].role",
            "user",
        ),
        ({"compute": {"cluster": "serverless"}}, "compute.instance_type", "required"),
        ({"compute": {"cluster": "gpu", "gpus_per_node": 0}}, "compute.gpus_per_node", ""),
        ({"data": {"train": "../../etc/passwd"}}, "data.train", ".."),
        ({"registration": {"tags": {"autopilot.run_id": "x"}}}, "registration.tags", "reserved"),
        ({"cleanup": {"idle_after_minutes": 0}}, "cleanup.idle_after_minutes", "greater than or equal to 1"),
        ({"trainig": {}}, "trainig", "unknown key"),
        ({"training": {"lora_r": 8}}, "training.lora_r", "unknown key"),
    ],
)
def test_every_error_names_its_field(sections: dict[str, object], path: str, fragment: str) -> None:
    issues = issues_of(dump(**sections))
    assert path in issues, issues
    assert fragment in issues[path]


def test_missing_sections_are_named() -> None:
    issues = issues_of(b"model: {name: x}\n")
    assert issues["data"] == "required field is missing" and issues["compute"] == "required field is missing"


def test_all_errors_reported_at_once() -> None:
    issues = issues_of(dump(training={"learning_rate": 0, "seed": -1}, cleanup={"keep": "maybe"}))
    assert {"training.learning_rate", "training.seed", "cleanup.keep"} <= set(issues)


def test_json_chosen_by_content_whatever_the_name() -> None:
    assert load_config(json.dumps(MINIMAL).encode()).model.name == "Phi-3-mini-4k-instruct"
    with pytest.raises(ConfigError, match="invalid JSON at line 1"):
        load_config(b'{"model": ')


def test_yaml_exponent_without_dot_is_still_a_number() -> None:
    # PyYAML reads 5e-6 as a string (YAML 1.1); the model turns it into the float users meant.
    config = load_config(dump(training={"learning_rate": "5e-6"}))
    assert config.training.learning_rate == 5e-6


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\xff\xfe\x00bad", "not UTF-8"),
        (b"   \n", "empty"),
        (b"- just\n- a list\n", "mapping"),
        (b"model: {name: x\n", "invalid YAML at line"),
        (b"a: 1\na: 2\n", "duplicate key 'a'"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b"a: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
        (b"[" * 10_000 + b"]" * 10_000, "nesting"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nesting"),
    ],
)
def test_hostile_documents_are_clear_errors(data: bytes, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(data)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        (b"dataset_label: 2024-13-45\n", "dataset_label", "as timestamp"),
        (b"training:\n  learning_rate: !!float abc\n", "training.learning_rate", "as float"),
        (b"training: {epochs: !!int 0xZZ}\n", "training.epochs", "as int"),
        (b"training: {epochs: " + b"9" * 5000 + b"}\n", "training.epochs", "as int"),
        (b"a: [1, !!bool maybe]\n", "a[1]", "as bool"),
        (b"a: !!timestamp soon\n", "a", "as timestamp"),
        (b"a: 2024-02-30\n", "a", "as timestamp"),
    ],
)
def test_values_yaml_cannot_construct_are_field_errors(data: bytes, path: str, fragment: str) -> None:
    # Before: PyYAML's ValueError/KeyError/AttributeError escaped the loader and stranded the run in received.
    with pytest.raises(ConfigError) as info:
        load_config(data)
    assert [i.path for i in info.value.issues] == [path]
    assert fragment in str(info.value) and "(line " in str(info.value)


def test_oversized_file_is_refused_before_parsing() -> None:
    data = b"# " + b"x" * MAX_CONFIG_BYTES
    with pytest.raises(ConfigError, match="limit is 1048576"):
        parse_document(data)


def test_billion_laughs_is_rejected_fast_with_bounded_memory() -> None:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*l{i - 1}"] * 9)
        lines.append(f"l{i}: &l{i} [{refs}]")
    bomb = ("\n".join(lines) + "\n").encode()
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases"):
        load_config(bomb)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Expansion would be 9**10 strings; refusing at the first alias keeps both tiny.
    assert peak < 5_000_000, peak
    assert elapsed < 5, elapsed


def test_precedence_default_model_config() -> None:
    config = load_config(dump(training={"learning_rate": 1e-4}, optimization={"lora": {"enabled": True}}))
    effective = resolve(config, {"learning_rate": "3e-5", "apply_lora": "false", "lora_r": "16", "precision": 16})
    p = effective.params
    assert (p["learning_rate"].value, p["learning_rate"].source) == (1e-4, "config")
    assert (p["apply_lora"].value, p["apply_lora"].source) == (True, "config")
    assert (p["lora_r"].value, p["lora_r"].source) == (16, "model")
    assert (p["precision"].value, p["precision"].source) == ("16", "model")
    assert (p["lora_alpha"].value, p["lora_alpha"].source) == (APP_DEFAULTS["lora_alpha"], "default")
    record = effective.to_record()
    assert record["lora_r"] == {"value": 16, "source": "model"}


def test_unusable_model_default_names_the_tag() -> None:
    with pytest.raises(ModelTagError) as info:
        resolve(load_config(dump()), {"learning_rate": "fast"})
    assert info.value.issues[0].path == "model.model_specific_defaults.learning_rate"


def test_unknown_model_defaults_are_reported_not_applied() -> None:
    effective = resolve(load_config(dump()), {"apply_ort": "true", "mystery_knob": 3})
    assert effective.ignored_model_defaults == ("mystery_knob",)
    assert "mystery_knob" not in effective.params


def test_component_wire_types() -> None:
    values = resolve(load_config(dump(optimization={"deepspeed": {"enabled": True, "stage": 3}})), {}).values()
    inputs = as_component_inputs(values)
    assert inputs["apply_deepspeed"] == "true" and inputs["apply_lora"] == "false"
    assert inputs["deepspeed_stage"] == "3" and inputs["precision"] == "32"
    assert inputs["num_train_epochs"] == 1 and isinstance(inputs["learning_rate"], float)


def test_shipped_json_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), (
        "schemas/training-config.schema.json is stale: run `python -m shared.config.schema --write`"
    )


def test_schema_validates_the_sample_like_the_model() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    sample = yaml.safe_load((ROOT / "samples" / "phi3-ultrachat.yaml").read_text(encoding="utf-8"))
    jsonschema.validate(sample, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**sample, "unknown": 1}, schema)
