"""The ledger on Azure Table storage (Azurite locally). One entity per run, ETag optimistic concurrency."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.exceptions import AlreadyExistsError, ConcurrencyError
from shared.ledger.record import RunRecord
from shared.states import RunState

PARTITION = "run"
# Table string properties hold at most 64 KiB (32K UTF-16 characters); JSON columns are checked against it.
MAX_PROPERTY_CHARS = 32_000
_JSON_FIELDS = (
    "config",
    "effective_params",
    "notes",
    "metrics",
    "history",
    "smoke_test",
    "timeline",
    "errors",
    "attempts",
)


def _to_entity(record: RunRecord) -> dict[str, Any]:
    data = record.to_dict()
    data.pop("etag")
    entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": record.run_id}
    for key, value in data.items():
        if key in _JSON_FIELDS:
            text = json.dumps(value, separators=(",", ":"), sort_keys=True)
            if len(text) > MAX_PROPERTY_CHARS:
                raise ValueError(
                    f"ledger field {key} is {len(text)} characters; the table limit is {MAX_PROPERTY_CHARS}"
                )
            entity[key] = text
        elif value is not None:
            entity[key] = value
    return entity


def _from_entity(entity: Any) -> RunRecord:
    data = {k: v for k, v in dict(entity).items() if k not in {"PartitionKey", "RowKey"}}
    for key in _JSON_FIELDS:
        if key in data and isinstance(data[key], str):
            data[key] = json.loads(data[key])
    data["run_id"] = entity["RowKey"]
    record = RunRecord.from_dict(data)
    record.etag = entity.metadata.get("etag")
    return record


class TableLedger:
    """``Ledger`` over one Azure table; the table is created on first use."""

    def __init__(self, connection_string: str, table_name: str = "autopilotruns") -> None:
        self._service = TableServiceClient.from_connection_string(connection_string)
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
        try:
            self.table.create_entity(_to_entity(record))
        except ResourceExistsError:
            raise AlreadyExistsError(record.run_id) from None
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
        except ResourceModifiedError:
            raise ConcurrencyError(f"run {record.run_id} changed since it was read") from None
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                raise ConcurrencyError(f"run {record.run_id} changed since it was read") from None
            raise
        record.etag = meta.get("etag")
        return record

    def list(self, states: Iterable[RunState] | None = None) -> list[RunRecord]:
        wanted = {s.value for s in states} if states is not None else None
        if wanted:
            query = " or ".join(f"state eq '{s}'" for s in sorted(wanted))
            entities = self.table.query_entities(f"PartitionKey eq '{PARTITION}' and ({query})")
        else:
            entities = self.table.query_entities(f"PartitionKey eq '{PARTITION}'")
        return sorted((_from_entity(e) for e in entities), key=lambda r: r.created_at)
