"""The local host against a real Azurite: blob polling with receipts and poison queue, the live webhook
server, and the ``autopilot up``/``down`` life cycle as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import azure.functions as func
import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from local.common.processes import free_ports, is_alive, port_in_use, read_pid_file, start_detached
from local.host.azurite import PROJECT_ROOT, AzuritePorts, connection_string
from local.host.blobpoller import MAX_TRIES, POISON_QUEUE, RECEIPTS_CONTAINER, BlobPoller
from local.host.discovery import discover
from local.host.host import LocalHost
from local.host.webhook import WEBHOOK_PATH
from shared.settings import Settings

if TYPE_CHECKING:
    from tests.conftest import StorageEnv

pytestmark = pytest.mark.azurite


class Seen:
    """What the test function received, copied out of the InputStream."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []


def blob_app(container: str, seen: Seen, *, fail: bool = False, pattern: str = "{name}") -> func.FunctionApp:
    app = func.FunctionApp()

    @app.function_name("on_blob")
    @app.blob_trigger(arg_name="blob", path=f"{container}/{pattern}", connection="AzureWebJobsStorage")
    def on_blob(blob: func.blob.InputStream) -> None:
        seen.calls.append(
            {
                "type": type(blob),
                "name": blob.name,
                "data": blob.read(),
                "length": blob.length,
                "etag": blob.blob_properties["ETag"],
                "uri": blob.uri,
            }
        )
        if fail:
            raise RuntimeError("cannot handle this blob")

    return app


def new_container(conn: str) -> ContainerClient:
    container = BlobServiceClient.from_connection_string(conn).get_container_client(f"it-{uuid.uuid4().hex[:12]}")
    container.create_container()
    return container


def poller_for(app: func.FunctionApp, conn: str, host_id: str) -> BlobPoller:
    return BlobPoller(discover(app).blob, host_connection=conn, resolve_connection=lambda _: conn, host_id=host_id)


def test_a_blob_fires_once_a_restart_does_not_refire_and_an_overwrite_does(azurite: str) -> None:
    container = new_container(azurite)
    host_id = f"test-{uuid.uuid4().hex[:8]}"
    seen = Seen()
    container.upload_blob("run.yaml", b"name: demo\n")
    poller = poller_for(blob_app(container.container_name, seen), azurite, host_id)

    [outcome] = poller.poll_once()
    assert outcome.succeeded
    [call] = seen.calls
    assert call["type"] is func.blob.InputStream
    assert call["name"] == f"{container.container_name}/run.yaml"
    assert call["data"] == b"name: demo\n"
    assert call["length"] == len(b"name: demo\n")
    assert call["etag"] == container.get_blob_client("run.yaml").get_blob_properties().etag
    assert call["uri"].endswith(f"/{container.container_name}/run.yaml")
    assert poller.poll_once() == []

    # A restarted host (new app object, new poller) finds the receipt in storage.
    restarted = poller_for(blob_app(container.container_name, seen), azurite, host_id)
    assert restarted.poll_once() == []
    receipts = BlobServiceClient.from_connection_string(azurite).get_container_client(RECEIPTS_CONTAINER)
    names = [b.name for b in receipts.list_blobs(name_starts_with=f"blobreceipts/{host_id}/")]
    assert len(names) == 1
    assert names[0].startswith(f"blobreceipts/{host_id}/Host.Functions.on_blob/{container.container_name}/run%2Eyaml/")

    container.upload_blob("run.yaml", b"name: demo2\n", overwrite=True)
    [again] = restarted.poll_once()
    assert again.succeeded
    assert [c["data"] for c in seen.calls] == [b"name: demo\n", b"name: demo2\n"]
    assert restarted.poll_once() == []


def test_the_blobs_of_one_pass_are_handled_at_the_same_time(azurite: str) -> None:
    # Before: one pass handled its blobs one after another, so a drop waited behind every other config's
    # submit (drop-to-submit p50 2.1 s). Each call here waits until the other one has started: handled one
    # at a time, the first would wait for the second forever (the barrier breaks after 30 s and it fails).
    import threading

    container = new_container(azurite)
    for name in ("a.yaml", "b.yaml"):
        container.upload_blob(name, b"x: 1\n")
    barrier = threading.Barrier(2, timeout=30)
    app = func.FunctionApp()

    @app.function_name("meet")
    @app.blob_trigger(arg_name="blob", path=f"{container.container_name}/{{name}}", connection="AzureWebJobsStorage")
    def meet(blob: func.blob.InputStream) -> None:
        barrier.wait()

    outcomes = poller_for(app, azurite, f"test-{uuid.uuid4().hex[:8]}").poll_once()
    assert sorted((o.target, o.succeeded) for o in outcomes) == [
        (f"{container.container_name}/a.yaml", True),
        (f"{container.container_name}/b.yaml", True),
    ]


def poison_messages(conn: str, container: str) -> list[dict[str, Any]]:
    queue = QueueClient.from_connection_string(conn, POISON_QUEUE, message_decode_policy=TextBase64DecodePolicy())
    messages = [json.loads(m.content) for m in queue.peek_messages(max_messages=32)]
    return [m for m in messages if m["ContainerName"] == container]


def test_a_blob_that_always_fails_is_tried_five_times_then_poisoned_once(azurite: str) -> None:
    container = new_container(azurite)
    seen = Seen()
    container.upload_blob("bad.yaml", b"boom")
    etag = container.get_blob_client("bad.yaml").get_blob_properties().etag
    app = blob_app(container.container_name, seen, fail=True)
    host_id = f"test-{uuid.uuid4().hex[:8]}"
    poller = poller_for(app, azurite, host_id)
    for attempt in range(MAX_TRIES + 2):
        if attempt == 2:
            # A restart half-way: the failure count lives in storage, not in memory.
            poller = poller_for(app, azurite, host_id)
        poller.poll_once()
    assert len(seen.calls) == MAX_TRIES
    assert poison_messages(azurite, container.container_name) == [
        {
            "Type": "BlobTrigger",
            "FunctionId": "Host.Functions.on_blob",
            "BlobType": "BlockBlob",
            "ContainerName": container.container_name,
            "BlobName": "bad.yaml",
            "ETag": etag,
        }
    ]


def test_odd_blob_names_still_reach_the_function(azurite: str) -> None:
    container = new_container(azurite)
    seen = Seen()
    names = ["a b.yaml", "ü%#?&=.yaml", "q'\"<>.json", "trail.", "%2E%2E/w.yaml", "deep/er/x.json", "x" * 900]
    for name in names:
        container.upload_blob(name, name.encode())
    poller = poller_for(blob_app(container.container_name, seen), azurite, f"test-{uuid.uuid4().hex[:8]}")
    assert all(o.succeeded for o in poller.poll_once())
    assert sorted(c["name"] for c in seen.calls) == sorted(f"{container.container_name}/{n}" for n in names)
    assert all(c["data"] == c["name"].split("/", 1)[1].encode() for c in seen.calls)
    assert poller.poll_once() == []


def test_the_path_pattern_selects_blobs_and_a_missing_container_is_not_an_error(azurite: str) -> None:
    container = new_container(azurite)
    seen = Seen()
    for name in ("in/a.json", "in/b.yaml", "out/c.json", "a.json"):
        container.upload_blob(name, b"{}")
    poller = poller_for(blob_app(container.container_name, seen, pattern="in/{name}.json"), azurite, "test-pattern")
    poller.poll_once()
    assert [c["name"] for c in seen.calls] == [f"{container.container_name}/in/a.json"]
    missing = poller_for(blob_app(f"none-{uuid.uuid4().hex[:8]}", seen), azurite, "test-missing")
    assert missing.poll_once() == []


def wait_until(check: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_the_started_host_polls_in_the_background_and_serves_the_webhook(storage_env: StorageEnv) -> None:
    seen = Seen()
    events: list[func.EventGridEvent] = []
    container = new_container(storage_env.connection_string)
    app = blob_app(container.container_name, seen)

    @app.function_name("on_event")
    @app.event_grid_trigger(arg_name="event")
    def on_event(event: func.EventGridEvent) -> None:
        events.append(event)

    host = LocalHost(app, Settings.from_env(), host_id=f"test-{uuid.uuid4().hex[:8]}")
    host.start(run_timers=False)
    try:
        container.upload_blob("live.yaml", b"x")
        assert wait_until(lambda: len(seen.calls) == 1)
        url = f"http://127.0.0.1:{storage_env.host_port}{WEBHOOK_PATH}"
        body = [
            {
                "id": "ev-1",
                "subject": "s",
                "eventType": "T",
                "eventTime": "2026-03-10T10:00:00Z",
                "data": {"k": 1},
                "dataVersion": "1",
            }
        ]
        headers = {"aeg-event-type": "Notification"}
        anonymous = httpx.post(url, params={"functionName": "on_event"}, json=body, headers=headers)
        assert anonymous.status_code == 401
        headers["x-functions-key"] = storage_env.webhook_key
        response = httpx.post(url, params={"functionName": "on_event"}, json=body, headers=headers)
        assert response.status_code == 200
        assert [e.id for e in events] == ["ev-1"]
        status = httpx.get(f"http://127.0.0.1:{storage_env.host_port}/admin/host/status")
        assert status.json() == {"state": "Running"}
    finally:
        started = time.monotonic()
        host.stop()
    assert time.monotonic() - started < 5
    assert not port_in_use(storage_env.host_port)


def cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopilot.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.integration
@pytest.mark.usefixtures("azurite_installed")
def test_up_and_down_run_the_local_life_cycle(tmp_path: Path) -> None:
    blob, queue, table, host_port = free_ports(4)
    ports = AzuritePorts(blob, queue, table)
    workdir = tmp_path / "wd"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_") and k != "AzureWebJobsStorage"}
    env.update(
        AzureWebJobsStorage=connection_string(ports),
        AUTOPILOT_HOST_PORT=str(host_port),
        AUTOPILOT_WORKDIR=str(workdir),
        PYTHONPATH=str(PROJECT_ROOT),
    )
    up = cli(["up"], tmp_path, env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Up in" in up.stdout
        key_file = workdir / "webhook.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert key not in up.stdout + up.stderr
        assert all(port_in_use(p) for p in (*ports.all(), host_port))
        base = f"http://127.0.0.1:{host_port}"
        assert httpx.get(f"{base}/admin/host/status").json() == {"state": "Running"}
        assert httpx.post(f"{base}{WEBHOOK_PATH}", params={"functionName": "register"}, json=[]).status_code == 401
        unknown = httpx.post(
            f"{base}{WEBHOOK_PATH}",
            params={"functionName": "nope"},
            json=[],
            headers={"x-functions-key": key, "aeg-event-type": "Notification"},
        )
        assert unknown.status_code == 400
        assert "known: deploy, register" in unknown.json()["error"]

        again = cli(["up"], tmp_path, env)
        assert again.returncode == 0
        assert "Already up." in again.stdout

        # Someone else's workdir on the same ports: a clear refusal, not a second Azurite.
        clash = cli(["up"], tmp_path, {**env, "AUTOPILOT_WORKDIR": str(tmp_path / "other")})
        assert clash.returncode == 1
        assert f"port {blob} (Azurite blob) is in use by another process" in clash.stderr
        assert "Traceback" not in clash.stderr

        # A local job process recorded by the platform is stopped by `down` too.
        job = start_detached(
            [sys.executable, "-c", "import time; time.sleep(120)"],
            log_path=workdir / "job.log",
            pid_path=workdir / "pids" / "job-demo.pid",
        )
        job_record = read_pid_file(workdir / "pids" / "job-demo.pid")
        assert job_record is not None
        host_log = (workdir / "host.log").read_text()
        assert "1 blob, 2 Event Grid, 3 timer, 1 queue function(s)" in host_log
        # The host's spans and log records go to JSON lines in the work dir (docs/observability.md).
        assert f"telemetry: {workdir / 'telemetry'}" in host_log
        assert (workdir / "telemetry" / "spans.jsonl").is_file() and (workdir / "telemetry" / "logs.jsonl").is_file()
        assert key not in host_log
    finally:
        down = cli(["down"], tmp_path, env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Stopped: local host, job-demo, Azurite." in down.stdout
    job.wait(timeout=5)
    assert not is_alive(job_record)
    assert not any(port_in_use(p) for p in (*ports.all(), host_port))
    assert not list(workdir.glob("*.pid")) and not list((workdir / "pids").glob("*.pid"))
    assert "Nothing was running." in cli(["down"], tmp_path, env).stdout


def test_a_container_that_cannot_be_listed_does_not_stall_the_others(azurite: str) -> None:
    broken = new_container(azurite)
    # Azurite answers 500 to listing a container holding a control character in a blob name.
    broken.upload_blob("bad\x01name.json", b"{")
    healthy = new_container(azurite)
    healthy.upload_blob("ok.json", b"{}")
    seen = Seen()
    app = func.FunctionApp()
    for index, container in enumerate((broken, healthy)):

        def handler(blob: func.blob.InputStream) -> None:
            seen.calls.append({"name": blob.name})

        app.function_name(f"on_blob_{index}")(
            app.blob_trigger(arg_name="blob", path=f"{container.container_name}/{{name}}", connection="c")(handler)
        )
    poller = poller_for(app, azurite, f"test-{uuid.uuid4().hex[:8]}")
    started = time.monotonic()
    poller.poll_once()
    assert time.monotonic() - started < 15
    assert [c["name"] for c in seen.calls] == [f"{healthy.container_name}/ok.json"]
