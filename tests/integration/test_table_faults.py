"""The table ledger under Azure Table's own faults: Azurite answers through the real azure-data-tables client,
except the requests a rule picks, which get an injected 503 or 412, before the service saw them or after it
committed them (the ambiguous write: the answer is lost, the write is not). What the app does with each is in
docs/azure-faults.md: no run stuck, none written twice, none missing from ``status``, no state change untold."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.pipeline._tools import is_rest
from azure.core.pipeline.transport import RequestsTransport
from azure.core.pipeline.transport._requests_basic import RequestsTransportResponse
from requests.structures import CaseInsensitiveDict

from shared.ledger.record import RunRecord
from shared.ledger.table import TableLedger
from shared.runs import RunStore
from shared.services.reconcile import reconcile
from shared.services.submit import submit_config
from shared.states import RunState
from tests.configs import config_bytes
from tests.fakes import FakeClock, FakePlatform, InMemoryStatusStore

pytestmark = pytest.mark.azurite

DEPLOY_TIMEOUT = timedelta(minutes=60)
# The service's own answer to a busy server (Table service error codes: ServerBusy, 503).
SERVER_BUSY = b'{"odata.error":{"code":"ServerBusy","message":{"lang":"en-US","value":"The server is busy."}}}'


@dataclass
class Rule:
    """Requests this rule answers: ``method`` on a URL ``picks``, ``times`` times; ``after`` lets the service
    commit the request first (its answer is then lost and replaced)."""

    method: str
    picks: Callable[[Any], bool]
    status: int
    times: int = 1
    after: bool = False


class Faults(RequestsTransport):
    """Azure Table (Azurite) through azure-core's own transport, with injected answers; no real sleeps."""

    def __init__(self) -> None:
        super().__init__()
        self.rules: list[Rule] = []
        self.injected: list[tuple[str, int]] = []

    def sleep(self, duration: float) -> None:
        return None  # the client's retry backoff: not waited in a test

    def send(self, request: Any, **kwargs: Any) -> Any:
        for rule in self.rules:
            if rule.times and rule.method == request.method and rule.picks(request):
                rule.times -= 1
                if rule.after:
                    super().send(request, **kwargs)
                self.injected.append((request.method, rule.status))
                return answer(request, rule.status)
        return super().send(request, **kwargs)


def answer(request: Any, status: int) -> Any:
    raw = requests.Response()
    raw.status_code = status
    raw.reason = "injected"
    raw.headers = CaseInsensitiveDict({"Content-Type": "application/json;odata=minimalmetadata"})
    raw.raw = io.BytesIO(SERVER_BUSY if status == 503 else b'{"odata.error":{"code":"UpdateConditionNotSatisfied"}}')
    raw.url = request.url
    if is_rest(request):
        from azure.core.pipeline.transport._requests_basic import _handle_non_stream_rest_response
        from azure.core.rest._requests_basic import RestRequestsTransportResponse

        response = RestRequestsTransportResponse(request=request, internal_response=raw)
        _handle_non_stream_rest_response(response)
        return response
    return RequestsTransportResponse(request, raw)


def the_run(request: Any) -> bool:
    """A read or write of a run's entity (its index entries are other partitions)."""
    return "PartitionKey=%27run%27" in request.url or "PartitionKey='run'" in request.url


def run_created(request: Any) -> bool:
    """The insert of a run's entity: a POST to the table whose body is in the run partition."""
    body = getattr(request, "content", None) or getattr(request, "data", None) or b""
    text = body.decode() if isinstance(body, bytes) else str(body)
    return '"PartitionKey": "run"' in text or '"PartitionKey":"run"' in text


@dataclass
class World:
    """The services on the table ledger (over the faulty transport) and the fake platform; ``heard`` are the
    state changes the observers were told of, as the notifier is."""

    faults: Faults
    ledger: TableLedger
    store: RunStore
    platform: FakePlatform
    heard: list[tuple[str, str]] = field(default_factory=list)

    def state(self, run: str) -> RunState:
        record = self.store.get(run)
        assert record is not None
        return record.state


@pytest.fixture
def world(azurite: str) -> World:
    faults = Faults()
    ledger = TableLedger(azurite, f"faults{uuid.uuid4().hex[:10]}", transport=faults)
    clock = FakeClock()
    heard: list[tuple[str, str]] = []
    store = RunStore(ledger, InMemoryStatusStore(), clock, observers=[lambda r: heard.append((r.run_id, r.state))])
    ledger.active()  # the table exists before any rule picks a request
    return World(faults, ledger, store, FakePlatform(clock), heard)


def drop(world: World) -> RunRecord | None:
    return submit_config(
        container="training-configs",
        blob_name="phi3.yaml",
        content=config_bytes(),
        etag='"0x1"',
        store=world.store,
        platform=world.platform,
        data_root=Path("."),
    )


def test_a_write_storage_committed_but_answered_503_is_the_writers_and_its_change_is_told(world: World) -> None:
    # The submit's write to `submitted` lands; its answer is a 503; the client retries it into a 412.
    world.faults.rules.append(Rule("PUT", the_run, 503, after=True))
    record = drop(world)
    assert world.faults.injected == [("PUT", 503)]
    assert record is not None and record.state == RunState.SUBMITTED and record.job_name
    assert (record.run_id, "submitted") in world.heard  # told once, as any state change
    assert world.heard.count((record.run_id, "submitted")) == 1
    assert len(world.platform.jobs) == 1


def test_a_create_storage_committed_but_answered_503_still_lists_the_run(world: World) -> None:
    world.faults.rules.append(Rule("POST", run_created, 503, after=True))
    record = drop(world)
    assert world.faults.injected == [("POST", 503)]
    assert record is not None and record.state == RunState.SUBMITTED
    assert world.ledger.recent(10) == [record.run_id]  # autopilot status shows it


def test_a_412_on_a_write_makes_the_writer_read_again_and_write_once(world: World) -> None:
    world.faults.rules.append(Rule("PUT", the_run, 412))
    record = drop(world)
    assert record is not None and record.state == RunState.SUBMITTED
    assert world.heard.count((record.run_id, "submitted")) == 1 and len(world.platform.jobs) == 1


def test_storage_down_for_a_submit_is_retried_by_the_trigger_with_one_job(world: World) -> None:
    world.faults.rules.append(Rule("PUT", the_run, 503, times=4))  # the first try and the client's 3 retries
    with pytest.raises(Exception, match="busy"):
        drop(world)  # the blob trigger delivers again
    run = next(iter(world.platform.jobs))
    assert world.state(run) == RunState.RECEIVED
    record = drop(world)
    assert record is not None and record.state == RunState.SUBMITTED and len(world.platform.jobs) == 1


def test_storage_down_during_a_sweep_leaves_the_run_to_the_next_one(world: World) -> None:
    record = drop(world)
    assert record is not None
    world.platform.finish_job(record.run_id)
    world.faults.rules.append(Rule("GET", the_run, 503, times=4))
    reconcile(world.store, world.platform, deploy_timeout=DEPLOY_TIMEOUT)
    assert world.state(record.run_id) == RunState.SUBMITTED  # not read: left as it was
    reconcile(world.store, world.platform, deploy_timeout=DEPLOY_TIMEOUT)
    assert world.state(record.run_id) == RunState.DEPLOYING
    assert len(world.platform.registered) == 1 and len(world.platform.endpoints) == 1
