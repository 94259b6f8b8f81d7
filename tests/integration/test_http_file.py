"""``test.http`` sent at a running local host, started as ``.vscode/launch.json`` starts it
(``python -m autopilot.main host``) with no key in its environment: it uses the one ``autopilot up`` made. The
config blob is taken up by the host's poller and becomes a run; the events are answered 200, the handshake with
its code."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from local.common import processes
from local.common.webhook_key import ensure_webhook_key
from local.host.azurite import development_sas
from local.host.webhook import WEBHOOK_PATH
from shared import runtime
from shared.naming import run_id
from tests.httpfile import read

if TYPE_CHECKING:
    from tests.conftest import StorageEnv

pytestmark = [pytest.mark.azurite, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


def _blob_endpoint(connection_string: str) -> str:
    fields = dict(part.split("=", 1) for part in connection_string.split(";") if part)
    return fields["BlobEndpoint"].rstrip("/")


def test_the_requests_of_test_http_reach_a_running_host(
    storage_env: StorageEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = ensure_webhook_key(storage_env.workdir)  # what `autopilot up` leaves behind
    monkeypatch.setenv("AUTOPILOT_PLATFORM", "local")
    monkeypatch.setenv("AUTOPILOT_DATA_ROOT", str(tmp_path / "no-data"))  # the config's data is not there
    env = dict(os.environ)
    env.pop("AUTOPILOT_WEBHOOK_KEY")
    env["PYTHONPATH"] = str(ROOT)
    requests = read(
        ROOT / "test.http",
        env={"AUTOPILOT_WEBHOOK_KEY": key, "AUTOPILOT_AZURITE_SAS": development_sas()}.__getitem__,
        overrides={
            "host": f"http://127.0.0.1:{storage_env.host_port}",
            "blob": _blob_endpoint(storage_env.connection_string),
        },
    )
    log_path = storage_env.workdir / "host.log"
    host = processes.start_detached(
        [sys.executable, "-m", "autopilot.main", "host"],
        log_path=log_path,
        pid_path=storage_env.workdir / "host.pid",
        name="host",
        cwd=tmp_path,  # no developer's local.settings.json
        env=env,
    )
    try:
        processes.wait_for_port(storage_env.host_port, timeout_s=60, process=host, name="host", log_path=log_path)
        answers = []
        with httpx.Client(timeout=30) as client:
            for request in requests:
                answer = client.request(
                    request.method, request.url, headers=request.headers, content=request.body.encode("utf-8")
                )
                answers.append((request, answer))
        for request, answer in answers:
            if request.path != WEBHOOK_PATH:
                assert answer.status_code in (201, 409), (request.title, answer.text)  # 409: the container exists
            elif request.headers["aeg-event-type"] == "SubscriptionValidation":
                code = json.loads(request.body)[0]["data"]["validationCode"]
                assert answer.status_code == 200 and answer.json() == {"validationResponse": code}
            else:
                assert answer.status_code == 200, (request.title, answer.text, processes.log_tail(log_path))
        [upload] = [r for r in requests if r.headers.get("x-ms-blob-type")]
        run = run_id(storage_env.config_container, upload.path.rsplit("/", 1)[1], upload.body.encode("utf-8"))
        deadline = time.monotonic() + 60
        record = None
        while time.monotonic() < deadline:
            record = runtime.run_store().get(run)
            if record is not None and record.state.value == "rejected":
                break
            time.sleep(0.3)
        assert record is not None, processes.log_tail(log_path, 40)
        assert record.state.value == "rejected", (record.state, record.errors)
        assert any(issue.path.startswith("data.") for issue in record.errors), record.errors
    finally:
        processes.stop_pid_file(storage_env.workdir / "host.pid", timeout_s=15)
        processes.stop_recorded_processes(storage_env.workdir, timeout_s=5)
