"""``World``: the services with their collaborators (in-memory ledger and status, stateful fake platform,
a fake clock), and shortcuts that deliver triggers like the runtime would. Shared by the service tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path

from shared.events import parse_event
from shared.ledger.record import RunRecord
from shared.notify import Send, owe
from shared.services.delivery import DeliveryReport, deliver_owed
from shared.services.lifecycle import on_model_registered, on_run_event
from shared.services.orphans import DEFAULT_ORPHAN_GRACE
from shared.services.reconcile import reconcile
from shared.services.stranded import DEFAULT_RECEIVED_DEADLINE
from shared.services.submit import submit_config
from shared.services.sweep import Deadline, SweepContext
from shared.states import RunState
from tests.configs import config_bytes
from tests.eventdata import WORKSPACE_TOPIC, load_event
from tests.fakes import FakeClock, FakePlatform, make_store

TIMEOUT = timedelta(minutes=60)


class World:
    """The services with their collaborators, and shortcuts that deliver triggers like the runtime would."""

    def __init__(
        self,
        observers: Sequence[Callable[[RunRecord], None]] = (),
        event_grid_topics: frozenset[str] = frozenset(),
        senders: Mapping[str, Send] | None = None,
        notify_allow_private: bool = True,
    ) -> None:
        self.event_grid_topics = event_grid_topics  # AUTOPILOT_EVENT_GRID_TOPICS, as allowed_topics gives it
        self.notify_allow_private = notify_allow_private  # AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES
        self.senders = dict(senders or {})  # the delivery worker's, by destination kind
        self.clock = FakeClock()
        # State changes record the notifications they owe, as the composition root wires it.
        self.store, self.ledger, self.status = make_store(self.clock, observers, owe=owe)
        self.platform = FakePlatform(self.clock)

    def drop(self, content: bytes | None = None, name: str = "phi3.yaml"):
        return submit_config(
            container="training-configs",
            blob_name=name,
            content=content or config_bytes(),
            etag='"0x1"',
            store=self.store,
            platform=self.platform,
            data_root=Path("."),
            event_grid_topics=self.event_grid_topics,
            notify_allow_private=self.notify_allow_private,
        )

    def deliver(self) -> DeliveryReport:
        """One run of the delivery worker's timer."""
        return deliver_owed(self.store, self.senders, deadline=Deadline(240.0))

    def run_event(self, fixture: str, run: str, **data: object) -> str:
        raw = load_event(fixture, RUN_ID=run)
        raw["data"].update(data)
        return on_run_event(self.store, self.platform, parse_event(raw), WORKSPACE_TOPIC)  # type: ignore[arg-type]

    def model_event(self, run: str) -> str:
        record = self.store.get(run)
        assert record is not None and record.model_version
        raw = load_event(
            "model_registered_camel",
            RUN_ID=run,
            MODEL_NAME=record.model_name or "",
            MODEL_VERSION=record.model_version,
        )
        return on_model_registered(self.store, self.platform, parse_event(raw), WORKSPACE_TOPIC)  # type: ignore[arg-type]

    def sweep_context(self) -> SweepContext:
        """What a reconcile invocation hands its steps, as ``reconcile`` builds it now."""
        return SweepContext(
            store=self.store,
            platform=self.platform,
            now=self.clock(),
            deadline=Deadline(240.0),
            concurrency=1,
            deploy_timeout=TIMEOUT,
            received_deadline=DEFAULT_RECEIVED_DEADLINE,
            orphan_grace=DEFAULT_ORPHAN_GRACE,
        )

    def reconcile(self) -> None:
        reconcile(self.store, self.platform, deploy_timeout=TIMEOUT)

    def finish_through_reconcile(self, run: str) -> None:
        """The job ends with no event seen; two reconcile looks take it to the deployment's outcome."""
        self.platform.finish_job(run)
        self.reconcile()
        self.platform.complete_deployments()
        self.reconcile()

    def state(self, run: str) -> RunState:
        record = self.store.get(run)
        assert record is not None
        return record.state
