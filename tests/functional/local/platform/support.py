"""Helpers for the local platform with real processes: a temp workspace, a small chat dataset, a recording
webhook.

Foundation models are cached across sessions in ``.test-work/models`` (git-ignored), linked into every
workspace, so the tiny model is built once per machine, not once per test.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from local.common import processes
from local.platform.adapter import LocalPlatform
from shared.config.params import APP_DEFAULTS, ComponentParams
from shared.platform.port import ComputeRequest, JobInfo, JobRequest
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[4]
SAMPLE = ROOT / "samples" / "ultrachat_sample"
MODELS_CACHE = ROOT / ".test-work" / "models"
TINY = "tiny-random-chat"
WEBHOOK_KEY = "functional-test-webhook-key"
JOB_TIMEOUT_S = 300


class RecordingWebhook:
    """A loopback stand-in for the host's Event Grid webhook: answers 200 and keeps every event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.keys: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                function = self.path.partition("functionName=")[2]
                for event in body:
                    outer.events.append({"function": function, **event})
                outer.keys.append(self.headers.get("x-functions-key"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/runtime/webhooks/EventGrid"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_type(self, short_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["eventType"].endswith("." + short_type)]

    def wait_for(self, short_type: str, count: int = 1, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.of_type(short_type)) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.of_type(short_type)


def write_small_dataset(directory: Path, train_rows: int = 12, test_rows: int = 4) -> None:
    """A few conversations of the shipped sample: enough to train a few steps and evaluate, quickly."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train_sft", train_rows), ("test_sft", test_rows), ("test_gen", test_rows)):
        lines = (SAMPLE / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[:rows]
        (directory / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass
class Workspace:
    platform: LocalPlatform
    webhook: RecordingWebhook
    workdir: Path
    data_root: Path

    def job_request(self, name: str, **params: Any) -> JobRequest:
        platform = self.platform
        model = platform.get_foundation_model(TINY, "latest", "azureml")
        data = platform.check_data({"train": "small/train_sft.jsonl", "test": "small/test_sft.jsonl"})
        values = {
            **APP_DEFAULTS,
            "apply_lora": True,
            "lora_r": 4,
            "lora_alpha": 8,
            "max_steps": 2,
            "max_seq_length": 128,
            "logging_steps": 1,
            **params,
        }
        return JobRequest(
            name=name,
            experiment_name="functional",
            display_name=name,
            foundation_model=model,
            compute=platform.check_compute(ComputeRequest("local-cpu", None, None), None),
            params=ComponentParams.model_validate(values),
            train_data=data["train"],
            validation_data=None,
            test_data=data["test"],
            tags={"autopilot_run_id": name, "autopilot_managed": "true"},
        )

    def wait_job(self, name: str, timeout_s: float = JOB_TIMEOUT_S) -> JobInfo:
        deadline = time.monotonic() + timeout_s
        while True:
            info = self.platform.get_job(name)
            if info.status.is_terminal or time.monotonic() > deadline:
                return info
            time.sleep(0.5)

    def running_pids(self) -> list[str]:
        pids = self.workdir / "pids"
        return sorted(p.name for p in pids.glob("*.pid") if processes.running_from_pid_file(p)) if pids.is_dir() else []

    def stop_all(self) -> None:
        processes.stop_recorded_processes(self.workdir, timeout_s=5.0)


def make_workspace(root: Path, **settings: str) -> Workspace:
    """A workspace under ``root``; ``settings`` add or override environment settings (e.g. the queue's)."""
    workdir, data_root = root / "work", root / "data"
    workdir.mkdir(parents=True)
    MODELS_CACHE.mkdir(parents=True, exist_ok=True)
    (workdir / "models").symlink_to(MODELS_CACHE, target_is_directory=True)
    write_small_dataset(data_root / "small")
    webhook = RecordingWebhook()
    settings = Settings.from_env(
        {
            "AUTOPILOT_WORKDIR": str(workdir),
            "AUTOPILOT_DATA_ROOT": str(data_root),
            "AUTOPILOT_WEBHOOK_URL": webhook.url,
            "AUTOPILOT_WEBHOOK_KEY": WEBHOOK_KEY,
            "AUTOPILOT_PLATFORM": "local",
            **settings,
        }
    )
    return Workspace(LocalPlatform(settings), webhook, workdir, data_root)


def kill_job_process(ws: Workspace, name: str) -> None:
    """SIGKILL the job's whole process group, as the OOM killer or a lost node would: nothing reports."""
    record = processes.read_pid_file(ws.workdir / "pids" / f"job-{name}.pid")
    assert record is not None and record.pgid
    os.killpg(record.pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while processes.is_alive(record):
        assert time.monotonic() < deadline
        time.sleep(0.1)
