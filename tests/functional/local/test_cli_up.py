"""``autopilot up`` against a port already taken: it opens a real socket, so it is not a unit test."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from autopilot.main import main

REMOTE_STORAGE = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A directory with no local.settings.json and no AUTOPILOT_* settings from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("AUTOPILOT_") or name == "AzureWebJobsStorage":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOPILOT_WORKDIR", str(tmp_path / "wd"))
    return tmp_path


def test_up_refuses_a_taken_host_port(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", REMOTE_STORAGE)  # no Azurite to start: straight to the host
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("AUTOPILOT_HOST_PORT", str(port))
        assert main(["up"]) == 1
    err = capsys.readouterr().err
    assert f"port {port} (the local host's webhook, AUTOPILOT_HOST_PORT) is in use by another process" in err
    # The key was generated before anything started, privately.
    assert (clean_env / "wd" / "webhook.key").stat().st_mode & 0o777 == 0o600
