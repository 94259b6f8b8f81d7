"""The ledger on Azure Table storage (Azurite locally). ETag optimistic concurrency on every run write.

One table, four partitions:
- ``run``: one entity per run, RowKey the run id (point reads by id; ``<config>-`` is a RowKey prefix). The
  record's scalar fields are properties; its lists, maps and typed parts are JSON text (a table property is a
  scalar), in the versioned form of ``record.py``;
- ``active``: the active index (see ``port.py``), RowKey the run id, so a sweep reads one small partition;
- ``recent``: RowKey ``<inverted creation time>-<run id>``, so the newest runs come first in key order;
- ``outbox``: the outbox index (see ``port.py``), RowKey the run id, read by the delivery worker.
"""

from __future__ import annotations

import builtins
import contextlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.exceptions import AlreadyExistsError, ConcurrencyError
from shared.ledger.limits import checked_json
from shared.ledger.port import ActiveEntry, OwingEntry
from shared.ledger.record import NESTED_FIELDS, RunRecord
from shared.states import TERMINAL, RunState
from shared.storage import StorageConnection, as_connection

PARTITION = "run"
ACTIVE_PARTITION = "active"
RECENT_PARTITION = "recent"
OUTBOX_PARTITION = "outbox"
# Partition "followup" of the same table holds the follow-up marks (shared/followups_queue.py), not runs.
BATCH_SIZE = 100  # entities per table transaction (the service's limit)
_INVERT_MS = 10**15


def _to_entity(record: RunRecord) -> dict[str, Any]:
    data = record.to_dict()
    entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": record.run_id}
    for key, value in data.items():
        if key in NESTED_FIELDS:
            entity[key] = checked_json(key, value)
        elif value is not None:
            entity[key] = value
    return entity


def _from_entity(entity: Any) -> RunRecord:
    data = {k: v for k, v in dict(entity).items() if k not in {"PartitionKey", "RowKey"}}
    for key in NESTED_FIELDS:
        if key in data and isinstance(data[key], str):
            data[key] = json.loads(data[key])
    data["run_id"] = entity["RowKey"]
    record = RunRecord.from_dict(data)
    record.etag = entity.metadata.get("etag")
    return record


def _active_entity(record: RunRecord) -> dict[str, Any]:
    return {"PartitionKey": ACTIVE_PARTITION, "RowKey": record.run_id, "indexed_at": record.created_at.isoformat()}


def _recent_entity(record: RunRecord) -> dict[str, Any]:
    millis = int(record.created_at.timestamp() * 1000)
    return {"PartitionKey": RECENT_PARTITION, "RowKey": f"{_INVERT_MS - millis:015d}-{record.run_id}"}


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _entry(entity: Any) -> ActiveEntry:
    return ActiveEntry(
        run_id=entity["RowKey"],
        indexed_at=_time(entity.get("indexed_at")) or datetime.min.replace(tzinfo=UTC),
        handled_at=_time(entity.get("handled_at")),
        lease_until=_time(entity.get("lease_until")),
        etag=entity.metadata.get("etag"),
    )


class TableLedger:
    """``Ledger`` over one Azure table; the table is created on first use.

    ``client_options`` go to the storage client (the benchmark passes a hook that counts requests)."""

    def __init__(
        self, connection: StorageConnection | str, table_name: str = "autopilotruns", **client_options: Any
    ) -> None:
        # A connection string (Azurite) or the identity-based connection of the Function App.
        self._service: TableServiceClient = as_connection(connection).table_service(**client_options)
        self._table_name = table_name
        self._client: TableClient | None = None

    @property
    def table(self) -> TableClient:
        if self._client is None:
            self._service.create_table_if_not_exists(self._table_name)
            self._client = self._service.get_table_client(self._table_name)
        return self._client

    def get(self, run_id: str) -> RunRecord | None:
        try:
            entity = self.table.get_entity(PARTITION, run_id)
        except HttpResponseError as exc:
            if exc.status_code == 404:
                return None
            raise
        return _from_entity(entity)

    def create(self, record: RunRecord) -> RunRecord:
        entity = _to_entity(record)  # checks the limits before anything is written
        if record.state not in TERMINAL:
            self._insert_if_missing(_active_entity(record))  # before the run: the index is never short
        try:
            self.table.create_entity(entity)
        except ResourceExistsError:
            existing = self.get(record.run_id)
            if existing is not None:
                # A create that storage committed but answered with an error (retried into a 409), or that died
                # before this line: the run must still be in the recent index, or ``status`` never lists it.
                self._insert_if_missing(_recent_entity(existing))
                if existing.state in TERMINAL:
                    self.drop_active(record.run_id)  # a re-delivered blob of a finished run
            raise AlreadyExistsError(record.run_id) from None
        self._insert_if_missing(_recent_entity(record))
        stored = self.get(record.run_id)
        assert stored is not None
        return stored

    def replace(self, record: RunRecord) -> RunRecord:
        if record.etag is None:
            raise ConcurrencyError(f"run {record.run_id} has no ETag: read it before writing")
        try:
            meta = self.table.update_entity(
                _to_entity(record),
                mode=UpdateMode.REPLACE,
                etag=record.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):  # changed, or gone, since it was read
            raise ConcurrencyError(f"run {record.run_id} changed since it was read") from None
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):
                raise ConcurrencyError(f"run {record.run_id} changed since it was read") from None
            raise
        record.etag = meta.get("etag")
        if record.state in TERMINAL:
            self.drop_active(record.run_id)  # after the terminal write: a crash here leaves a stale entry only
        return record

    def list(self, states: Iterable[RunState] | None = None) -> list[RunRecord]:
        wanted = {s.value for s in states} if states is not None else None
        if wanted is not None and not wanted:
            return []
        if wanted:
            query = " or ".join(f"state eq '{s}'" for s in sorted(wanted))
            entities = self.table.query_entities(f"PartitionKey eq '{PARTITION}' and ({query})")
        else:
            entities = self.table.query_entities(f"PartitionKey eq '{PARTITION}'")
        return sorted((_from_entity(e) for e in entities), key=lambda r: r.created_at)

    def with_prefix(self, prefix: str) -> builtins.list[RunRecord]:
        if not prefix:
            return self.list()
        # Run ids are ``[a-z0-9-]``: the key range [prefix, prefix + U+FFFF) holds exactly the ids it starts.
        low = prefix.replace("'", "''")
        query = f"PartitionKey eq '{PARTITION}' and RowKey ge '{low}' and RowKey lt '{low}\uffff'"
        return sorted((_from_entity(e) for e in self.table.query_entities(query)), key=lambda r: r.created_at)

    def active(self) -> builtins.list[ActiveEntry]:
        return [_entry(e) for e in self.table.query_entities(f"PartitionKey eq '{ACTIVE_PARTITION}'")]

    def claim(self, entry: ActiveEntry, now: datetime, until: datetime) -> bool:
        if entry.lease_until is not None and entry.lease_until > now:
            return False
        patch = {
            "PartitionKey": ACTIVE_PARTITION,
            "RowKey": entry.run_id,
            "handled_at": now.isoformat(),
            "lease_until": until.isoformat(),
        }
        try:
            self.table.update_entity(
                patch, mode=UpdateMode.MERGE, etag=entry.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):
                return False
            raise
        return True

    def release(self, run_id: str) -> None:
        patch = {"PartitionKey": ACTIVE_PARTITION, "RowKey": run_id, "lease_until": ""}
        with contextlib.suppress(ResourceNotFoundError):  # the run finished and left the index meanwhile
            self.table.update_entity(patch, mode=UpdateMode.MERGE)

    def drop_active(self, run_id: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self.table.delete_entity(ACTIVE_PARTITION, run_id)

    def recent(self, limit: int, *, skip: int = 0) -> builtins.list[str]:
        wanted = limit + skip
        entities = self.table.query_entities(
            f"PartitionKey eq '{RECENT_PARTITION}'", select=["RowKey"], results_per_page=min(max(wanted, 1), 1000)
        )
        return [e["RowKey"].split("-", 1)[1] for e in islice(entities, skip, wanted)]

    def owing(self) -> builtins.list[OwingEntry]:
        return [
            OwingEntry(
                e["RowKey"],
                _time(e.get("marked_at")) or datetime.min.replace(tzinfo=UTC),
                etag=e.metadata.get("etag"),
            )
            for e in self.table.query_entities(f"PartitionKey eq '{OUTBOX_PARTITION}'")
        ]

    def mark_owing(self, run_id: str, at: datetime) -> None:
        # An upsert: a new entry, or a new ETag on the one there, so a worker that listed it keeps it.
        entity = {"PartitionKey": OUTBOX_PARTITION, "RowKey": run_id, "marked_at": at.isoformat()}
        self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def drop_owing(self, entry: OwingEntry) -> bool:
        try:
            self.table.delete_entity(
                OUTBOX_PARTITION, entry.run_id, etag=entry.etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceNotFoundError:
            return True
        except ResourceModifiedError:
            return False
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return False
            if exc.status_code == 404:
                return True
            raise
        return True

    def import_records(self, records: Iterable[RunRecord]) -> int:
        """Insert many runs with their index entries in batch transactions (migrations, benchmarks)."""
        by_partition: dict[str, list[dict[str, Any]]] = {PARTITION: [], ACTIVE_PARTITION: [], RECENT_PARTITION: []}
        count = 0
        for record in records:
            by_partition[PARTITION].append(_to_entity(record))
            by_partition[RECENT_PARTITION].append(_recent_entity(record))
            if record.state not in TERMINAL:
                by_partition[ACTIVE_PARTITION].append(_active_entity(record))
            count += 1
        # The active entries go first, as in ``create``.
        for partition in (ACTIVE_PARTITION, PARTITION, RECENT_PARTITION):
            self._upsert_batches(by_partition[partition])
        return count

    def _insert_if_missing(self, entity: dict[str, Any]) -> None:
        with contextlib.suppress(ResourceExistsError):
            self.table.create_entity(entity)

    def _upsert_batches(self, entities: builtins.list[dict[str, Any]]) -> None:
        for start in range(0, len(entities), BATCH_SIZE):
            chunk = entities[start : start + BATCH_SIZE]
            self.table.submit_transaction([("upsert", e, {"mode": UpdateMode.REPLACE}) for e in chunk])
