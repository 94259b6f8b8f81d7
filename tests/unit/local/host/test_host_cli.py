from __future__ import annotations

import logging
import sys
from pathlib import Path

import azure.functions as func
import pytest

from autopilot.main import build_parser, main
from local.common.exceptions import HostConfigError, NotInstalledError
from local.host import azurite
from local.host.azurite import AzuritePorts, connection_string, ports_from_connection_string
from local.host.host import LocalHost, run_host
from shared.settings import AZURITE_CONNECTION_STRING, Settings

REMOTE_STORAGE = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A directory with no local.settings.json and no AUTOPILOT_* settings from the developer's shell."""
    import os

    for name in list(os.environ):
        if name.startswith("AUTOPILOT_") or name == "AzureWebJobsStorage":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOPILOT_WORKDIR", str(tmp_path / "wd"))
    return tmp_path


def test_ports_come_from_a_loopback_connection_string_only() -> None:
    assert ports_from_connection_string(AZURITE_CONNECTION_STRING) == AzuritePorts(10000, 10001, 10002)
    custom = AzuritePorts(20000, 20001, 20002)
    assert ports_from_connection_string(connection_string(custom)) == custom
    assert ports_from_connection_string(REMOTE_STORAGE) is None
    # The default connection string and the generated one agree on the development account.
    assert connection_string() == AZURITE_CONNECTION_STRING


def test_a_missing_npm_install_is_named(tmp_path: Path) -> None:
    with pytest.raises(NotInstalledError, match="run `npm install` in"):
        azurite.azurite_executable(tmp_path)


def test_up_without_node_modules_says_run_npm_install(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(azurite, "PROJECT_ROOT", clean_env)
    assert main(["up"]) == 1
    err = capsys.readouterr().err
    assert "run `npm install`" in err
    assert "Traceback" not in err


def test_down_with_nothing_running(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["down"]) == 0
    assert "Nothing was running." in capsys.readouterr().out


def test_up_and_down_are_listed_and_host_is_internal() -> None:
    help_text = build_parser().format_help()
    assert "up" in help_text and "down" in help_text
    assert "host" not in help_text.replace("local host", "")


def test_the_host_refuses_to_start_without_a_webhook_key(clean_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    assert run_host() == 1
    assert "AUTOPILOT_WEBHOOK_KEY is empty" in caplog.text
    with pytest.raises(HostConfigError, match="AUTOPILOT_WEBHOOK_KEY is empty"):
        LocalHost(func.FunctionApp(), Settings.from_env())


def test_the_host_reports_an_app_that_cannot_be_imported(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AUTOPILOT_WEBHOOK_KEY", "k")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the host puts the current directory on it
    (clean_env / "broken_app.py").write_text("raise RuntimeError('broken at import')\n")
    caplog.set_level(logging.ERROR)
    assert run_host("broken_app:app") == 1
    assert "could not load the function app broken_app:app" in caplog.text
