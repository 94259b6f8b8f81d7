"""Settings: every setting the app reads is in local.settings.sample.json, and secrets stay out of repr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.settings import DEFAULTS, SECRETS, Settings, sample_document

ROOT = Path(__file__).resolve().parents[3]


def test_sample_lists_every_setting_with_its_default() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))
    assert sample == sample_document(), "run: python -m shared.settings --write-sample"
    assert sample["IsEncrypted"] is False
    assert set(sample["Values"]) == set(DEFAULTS)


def test_every_setting_has_a_default_that_parses() -> None:
    built = Settings.from_env({})
    assert built.host_port == 7071 and built.blob_poll_seconds == 0.5 and built.allow_developer_credentials is False
    assert {
        "AzureWebJobsStorage",
        "AUTOPILOT_WEBHOOK_KEY",
        "AUTOPILOT_NOTIFY_SIGNING_KEY",
        "AUTOPILOT_EVENT_GRID_TOPIC_KEY",
    } == SECRETS
    assert built.quota_check == "reject"


def test_the_quota_check_mode_is_one_of_three() -> None:
    assert Settings.from_env({"AUTOPILOT_QUOTA_CHECK": " Warn "}).quota_check == "warn"
    with pytest.raises(ValueError, match="AUTOPILOT_QUOTA_CHECK must be one of reject, warn, off, not 'maybe'"):
        Settings.from_env({"AUTOPILOT_QUOTA_CHECK": "maybe"})


def test_a_malformed_number_names_its_setting() -> None:
    with pytest.raises(ValueError, match=r"AUTOPILOT_HOST_PORT must be an integer, not 'abc'"):
        Settings.from_env({"AUTOPILOT_HOST_PORT": "abc"})


def test_platform_defaults_to_local_and_to_azureml_with_a_workspace() -> None:
    assert Settings.from_env({}).platform == "local"
    assert Settings.from_env({"AZUREML_WORKSPACE_NAME": "ws"}).platform == "azureml"
    assert Settings.from_env({"AZUREML_WORKSPACE_NAME": "ws", "AUTOPILOT_PLATFORM": "local"}).platform == "local"
    with pytest.raises(ValueError, match="AUTOPILOT_PLATFORM"):
        Settings.from_env({"AUTOPILOT_PLATFORM": "gcp"})


def test_repr_hides_secrets() -> None:
    s = Settings.from_env({"AUTOPILOT_WEBHOOK_KEY": "super-secret-key"})
    assert "super-secret-key" not in repr(s) and "AccountKey" not in repr(s)
