"""The local host's queue trigger runs with the queue settings host.json gives the Functions host on Azure."""

from __future__ import annotations

import json
from pathlib import Path

from local.host.queuepoller import MAX_DEQUEUE_COUNT, POLL_SECONDS, RETRY_VISIBILITY_S, queue_name

ROOT = Path(__file__).resolve().parents[4]


def seconds(timespan: str) -> float:
    hours, minutes, secs = timespan.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(secs)


def test_the_local_queue_trigger_uses_the_hosts_queue_settings() -> None:
    queues = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))["extensions"]["queues"]
    assert queues["maxDequeueCount"] == MAX_DEQUEUE_COUNT
    assert seconds(queues["visibilityTimeout"]) == RETRY_VISIBILITY_S
    assert seconds(queues["maxPollingInterval"]) == POLL_SECONDS


def test_a_queue_name_may_be_an_app_setting() -> None:
    assert queue_name("f", {"queueName": "%MY_QUEUE%"}, {"MY_QUEUE": "jobs"}) == "jobs"
    assert queue_name("f", {"queueName": "plain"}, {}) == "plain"
