"""Moving runs through the state machine: ledger write with ETag retry, then the status blob mirror.

This is the only place that changes a run's state, so the state machine is enforced once: an illegal or
backward move is a logged no-op, a concurrent writer makes us re-read and re-decide. The notifications a state
change owes are recorded in that same write (``owe``, shared/notify.py), so a state is never entered without
them and never owes them twice; they are sent later, by the delivery worker, never here.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from shared import telemetry
from shared.exceptions import AlreadyExistsError, ConcurrencyError
from shared.ledger.port import Ledger
from shared.ledger.record import RunRecord
from shared.states import RunState, can_move
from shared.status import StatusStore, mirror

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Mutation = Callable[[RunRecord], None]
# Records in a run entering a state what it owes (its outbox); True when it added something.
Owe = Callable[[RunRecord], bool]
MAX_CONFLICT_RETRIES = 20


def utc_now() -> datetime:
    return datetime.now(UTC)


def _landed(current: RunRecord, attempted: RunRecord) -> bool:
    """Whether the stored run is exactly the write just attempted (its ``updated_at`` included, so another
    writer's change never passes for it)."""
    return current.to_dict() == attempted.to_dict()


class RunStore:
    """The ledger plus its status-blob mirror, with the state machine applied on every write."""

    def __init__(
        self,
        ledger: Ledger,
        status: StatusStore,
        clock: Clock = utc_now,
        observers: Sequence[Callable[[RunRecord], None]] = (),
        owe: Owe | None = None,
    ) -> None:
        self.ledger = ledger
        self.status = status
        self.clock = clock
        # Told of every state a run enters, after the ledger write; best effort, and never to send anything.
        self.observers = tuple(observers)
        # Records the notifications a state change owes, inside its write (shared/notify.py ``owe``).
        self.owe = owe

    def get(self, run_id: str) -> RunRecord | None:
        return self.ledger.get(run_id)

    def list(self, states: Iterable[RunState] | None = None) -> list[RunRecord]:
        return self.ledger.list(states)

    def create(
        self,
        run_id: str,
        *,
        config_blob: str,
        config_name: str,
        content: bytes,
        config_etag: str | None,
        platform: str,
    ) -> tuple[RunRecord, bool]:
        """The run in state ``received``; returns (record, created). An existing run is returned as is."""
        now = self.clock()
        record = RunRecord(
            run_id=run_id,
            state=RunState.RECEIVED,
            config_blob=config_blob,
            config_name=config_name,
            created_at=now,
            updated_at=now,
            config_etag=config_etag,
            config_sha256=hashlib.sha256(content).hexdigest(),
            platform=platform,
            timeline={RunState.RECEIVED.value: now.isoformat()},
        )
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                stored = self.ledger.create(record)
                break
            except AlreadyExistsError:
                existing = self.ledger.get(run_id)
                if existing is not None:
                    return existing, False
                # Deleted between the conflict and the read (by hand, or by whoever lost it): create it again.
                log.warning("run %s: existed, then vanished before it was read; creating it again", run_id)
        else:
            raise ConcurrencyError(f"run {run_id}: created and deleted {MAX_CONFLICT_RETRIES} times by others")
        self._mirror(stored)
        with telemetry.run_scope(stored, span="autopilot.state_change"):
            telemetry.state_changed(stored, None)
        return stored, True

    def advance(self, run: RunRecord | str, target: RunState, mutate: Mutation | None = None) -> RunRecord | None:
        """Move the run to ``target`` and apply ``mutate``; None (and a log line) if the move is not legal.

        Given a record (as read by the caller, with its ETag) the first write needs no read; a concurrent
        writer makes it re-read and re-decide."""
        return self._write(run, target, mutate)

    def update(self, run: RunRecord | str, mutate: Mutation) -> RunRecord | None:
        """Change fields without changing state."""
        return self._write(run, None, mutate)

    def _write(self, run: RunRecord | str, target: RunState | None, mutate: Mutation | None) -> RunRecord | None:
        run_id = run if isinstance(run, str) else run.run_id
        # A copy: the caller's record stays as it was read if the write loses a race.
        known = None if isinstance(run, str) or run.etag is None else copy.deepcopy(run)
        for _ in range(MAX_CONFLICT_RETRIES):
            record, known = (known, None) if known is not None else (self.ledger.get(run_id), None)
            if record is None:
                log.warning("run %s: not in the ledger; nothing to update", run_id)
                return None
            if target is not None:
                if record.state == target:
                    log.info("run %s: already %s; duplicate ignored", run_id, target.value)
                    return None
                if not can_move(record.state, target):
                    log.info(
                        "run %s: %s -> %s is not a legal move; ignored",
                        run_id,
                        record.state.value,
                        target.value,
                    )
                    return None
            now = self.clock()
            before = record.state.value
            if mutate is not None:
                mutate(record)
            if target is not None:
                record.state = target
                record.timeline.setdefault(target.value, now.isoformat())
            record.updated_at = now
            if target is not None and self.owe is not None and self.owe(record):
                # Indexed before the write, so the delivery worker finds every run that owes something.
                self.ledger.mark_owing(run_id, now)
            record.revision += 1
            try:
                stored = self.ledger.replace(record)
            except ConcurrencyError:
                current = self.ledger.get(run_id)
                if current is None or not _landed(current, record):
                    log.info("run %s: changed by another writer; re-reading", run_id)
                    known = current  # what the next try starts from: no second read
                    continue
                # The storage service committed this very write, then answered an error (a 503 that azure-core
                # retried into a 412): it is this writer's, and its state change is told like any other.
                log.info("run %s: the write landed although storage answered an error", run_id)
                stored = current
            self._mirror(stored)
            if target is not None:
                # In the run's scope: the line, the span event and what observers log carry its names.
                with telemetry.run_scope(stored, span="autopilot.state_change"):
                    telemetry.state_changed(stored, before)
                    log.info("run %s: state %s", run_id, target.value, extra={"run_id": run_id, "state": target.value})
                    self._tell(stored)
            return stored
        raise ConcurrencyError(f"run {run_id}: gave up after {MAX_CONFLICT_RETRIES} conflicting writes")

    def _tell(self, record: RunRecord) -> None:
        for observer in self.observers:
            try:
                observer(record)
            except Exception:
                log.warning("run %s: an observer of state changes failed", record.run_id, exc_info=True)

    def _mirror(self, record: RunRecord) -> None:
        # The ledger is the truth; a status blob that failed to write is rewritten by the next change.
        try:
            mirror(self.status, record)
        except Exception:
            log.warning("run %s: status blob not written", record.run_id, exc_info=True)
