"""The CLI's one settings loader (autopilot/settings.py): process environment > local.settings.json > the
checkout's azd environment, read from a checkout made here the way azd and Core Tools lay it out."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from autopilot.settings import (
    PROJECT_DIR_SETTING,
    SettingsFileError,
    gather,
    local_twin,
    project_dir,
    read_azd_environment,
)
from shared.settings import Settings

# What `azd up` leaves in .azure/<env>/.env for this template: azd's own keys, the outputs of
# infra/main.bicep, and what the user set with `azd env set` (azd writes KEY="value").
AZD_DEV = """AZURE_ENV_NAME="dev"
AZURE_LOCATION="swedencentral"
AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-00000000000a"
AZUREML_RESOURCE_GROUP="rg-ml"
AZUREML_WORKSPACE_NAME="ws-finetune"
AZURE_RESOURCE_GROUP="rg-dev"
AZURE_FUNCTION_APP_NAME="func-abc123"
AZURE_STORAGE_ACCOUNT_NAME="stabc123"
AUTOPILOT_CONFIG_CONTAINER="training-configs"
AUTOPILOT_STATUS_CONTAINER="training-status-azd"
AZUREML_WORKSPACE_TOPIC_OWNED="true"
"""


def checkout(
    root: Path,
    *,
    local: dict[str, str] | None = None,
    envs: dict[str, str] | None = None,
    default: str | None = "dev",
) -> Path:
    """A checkout: azure.yaml, optionally local.settings.json and .azure/<env>/.env files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "azure.yaml").write_text("name: fine-tune-autopilot\n", encoding="utf-8")
    if local is not None:
        (root / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Values": local}), "utf-8")
    for name, text in (envs or {}).items():
        (root / ".azure" / name).mkdir(parents=True, exist_ok=True)
        (root / ".azure" / name / ".env").write_text(text, encoding="utf-8")
    if envs is not None and default is not None:
        (root / ".azure" / "config.json").write_text(json.dumps({"version": 1, "defaultEnvironment": default}))
    return root


def test_the_process_environment_wins_then_local_settings_then_the_azd_environment(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        local={"AUTOPILOT_STATUS_CONTAINER": "status-from-file", "AUTOPILOT_LEDGER_TABLE": "fromfile"},
        envs={"dev": AZD_DEV},
    )
    sources = gather(root=root, environ={"AUTOPILOT_LEDGER_TABLE": "fromenv"})
    settings = sources.settings()
    assert settings.ledger_table == "fromenv"
    assert settings.status_container == "status-from-file"
    assert settings.config_container == "training-configs"
    assert sources.origins["AUTOPILOT_LEDGER_TABLE"] == "environment"
    assert sources.origins["AUTOPILOT_STATUS_CONTAINER"] == str(root / "local.settings.json")
    assert sources.origins["AUTOPILOT_CONFIG_CONTAINER"] == "azd environment dev"
    # azd's names for the subscription and the app's storage are read as the app's settings.
    assert settings.azureml_subscription_id == "00000000-0000-0000-0000-00000000000a"
    assert (settings.azureml_resource_group, settings.azureml_workspace_name) == ("rg-ml", "ws-finetune")
    assert settings.platform == "azureml"
    storage = settings.storage()
    assert storage.uses_identity and storage.service_uri("table") == "https://stabc123.table.core.windows.net"
    # Outputs that name no setting stay out; the person's login is asked for.
    assert "AZURE_FUNCTION_APP_NAME" not in sources.values
    assert settings.allow_developer_credentials is True


def test_azure_env_name_picks_another_environment_and_a_missing_one_is_named(tmp_path: Path) -> None:
    prod = AZD_DEV.replace('"ws-finetune"', '"ws-prod"').replace('AZURE_ENV_NAME="dev"', 'AZURE_ENV_NAME="prod"')
    root = checkout(tmp_path, envs={"dev": AZD_DEV, "prod": prod})
    assert gather(root=root, environ={}).settings().azureml_workspace_name == "ws-finetune"
    assert gather(root=root, environ={"AZURE_ENV_NAME": "prod"}).settings().azureml_workspace_name == "ws-prod"
    with pytest.raises(SettingsFileError, match=r"AZURE_ENV_NAME=staging: there is no .*staging.*azd env list"):
        gather(root=root, environ={"AZURE_ENV_NAME": "staging"})
    with pytest.raises(SettingsFileError, match="is not an azd environment name"):
        gather(root=root, environ={"AZURE_ENV_NAME": "../prod"})


def test_no_azd_environment_means_the_local_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bare = checkout(tmp_path / "bare")
    assert read_azd_environment(bare, {"AZURE_ENV_NAME": "dev"}) is None  # no .azure directory at all
    settings = gather(root=bare, environ={}).settings()
    assert settings.platform == "local" and not settings.storage().uses_identity  # Azurite
    stale = checkout(tmp_path / "stale", envs={"dev": AZD_DEV}, default="gone")
    with caplog.at_level(logging.WARNING):
        assert read_azd_environment(stale, {}) is None
    assert "names the azd environment gone" in caplog.text


def test_the_local_twins_settings_file_shadowing_the_deployment_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sample = json.loads(Path("local.settings.sample.json").read_text(encoding="utf-8"))["Values"]
    root = checkout(tmp_path, local=sample, envs={"dev": AZD_DEV})
    with caplog.at_level(logging.WARNING):
        settings = gather(root=root, environ={}).settings()
    # A copy of the sample points at Azurite; the CLI follows it and says which deployment it is not using.
    assert not settings.storage().uses_identity
    assert "local.settings.json overrides the azd environment dev" in caplog.text
    assert "AzureWebJobsStorage (not the storage account stabc123)" in caplog.text
    assert "AUTOPILOT_STATUS_CONTAINER" in caplog.text


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    root = checkout(tmp_path / "a", envs={"dev": AZD_DEV})
    (root / ".azure" / "config.json").write_text("{not json")
    with pytest.raises(SettingsFileError, match=r"config.json: cannot be read as JSON"):
        gather(root=root, environ={})
    root = checkout(tmp_path / "b")
    (root / "local.settings.json").write_text('{"Values": ["AzureWebJobsStorage"]}')
    with pytest.raises(ValueError, match=r'local.settings.json: "Values" must be an object'):
        gather(root=root, environ={})


def test_the_checkout_is_found_upward_from_the_current_directory(tmp_path: Path) -> None:
    root = checkout(tmp_path / "repo")
    (root / "samples" / "deep").mkdir(parents=True)
    assert project_dir({}, cwd=root / "samples" / "deep") == root
    assert project_dir({PROJECT_DIR_SETTING: str(tmp_path)}, cwd=root) == tmp_path
    assert project_dir({}, cwd=tmp_path) == tmp_path  # no azure.yaml above: the current directory


def test_the_local_twins_commands_read_no_azd_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = checkout(tmp_path, local={"AUTOPILOT_HOST_PORT": "7190"}, envs={"dev": AZD_DEV})
    monkeypatch.setenv(PROJECT_DIR_SETTING, str(root))
    for name in ("AUTOPILOT_HOST_PORT", "AZUREML_WORKSPACE_NAME", "AzureWebJobsStorage__accountName"):
        monkeypatch.setenv(name, "unset")  # recorded, so whatever local_twin() puts there is undone after
        monkeypatch.delenv(name)
    settings = local_twin()
    assert settings.platform == "local" and settings.host_port == 7190
    # ... and what local.settings.json says is in this process's environment, for the twin's processes.
    import os

    assert os.environ["AUTOPILOT_HOST_PORT"] == "7190"


@pytest.mark.parametrize(
    ("local", "allowed"), [({}, True), ({"AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES": "false"}, False)]
)
def test_the_local_twin_lets_notifications_reach_loopback_unless_its_settings_say_no(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local: dict[str, str], allowed: bool
) -> None:
    root = checkout(tmp_path, local=local)
    monkeypatch.setenv(PROJECT_DIR_SETTING, str(root))
    monkeypatch.setenv("AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES", "unset")  # undone after, whatever is put there
    monkeypatch.delenv("AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES")
    assert local_twin().notify_allow_private_addresses is allowed
    assert Settings.from_env({}).notify_allow_private_addresses is False  # the app's own default: refused


def test_the_cli_asks_for_a_persons_login_and_the_function_app_never_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.identity import (
        AzureCliCredential,
        AzureDeveloperCliCredential,
        ChainedTokenCredential,
        ManagedIdentityCredential,
    )

    from shared import runtime
    from shared.identity import build_credential

    root = checkout(tmp_path, envs={"dev": AZD_DEV})
    monkeypatch.setenv(PROJECT_DIR_SETTING, str(root))
    monkeypatch.chdir(root)
    # The app's settings as the Bicep sets them: identity-based storage, nothing allowing a person's login.
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.setenv("AzureWebJobsStorage__accountName", "stabc123")
    monkeypatch.delenv("AUTOPILOT_ALLOW_DEVELOPER_CREDENTIALS", raising=False)

    cli = gather().settings()
    person_first = [AzureCliCredential, AzureDeveloperCliCredential, ManagedIdentityCredential]
    for credential in (build_credential(cli), cli.storage().token_credential()):
        assert isinstance(credential, ChainedTokenCredential)
        assert [type(c) for c in credential.credentials] == person_first

    # What functions/ run on: the composition root from the process environment, which reads no checkout file.
    app = runtime.current().settings
    assert app.allow_developer_credentials is False
    assert isinstance(build_credential(app), ManagedIdentityCredential)
    assert isinstance(app.storage().token_credential(), ManagedIdentityCredential)
