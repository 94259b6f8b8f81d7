"""``FollowUps`` on Azure Storage: a queue message with a visibility delay, and a mark per (run, kind) that keeps a
watch's chain of checks single.

The message is the follow-up's JSON, base64-encoded: the Functions queue trigger reads base64 by default
(``messageEncoding``, host.json reference). It becomes visible after the delay (Put Message's
``visibilitytimeout``, at most 7 days), when the queue trigger (functions/followups.py; the local host's
queue poller on Azurite) hands it to the check.

The mark is one table entity per (run, kind) holding the watch and the highest attempt scheduled; it is
written with the entity's ETag before the message is sent, so of two copies of one message handled at once
only one schedules the next check. A crash between the mark and the send loses that check: the timers are
the backstop. The marks live in the ledger's table, in partition ``followup`` (the ledger reads only its own
partitions), so follow-ups need no table, setting or role beyond the ledger's.
"""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.followups import FollowUp, capped
from shared.storage import StorageConnection, as_connection

if TYPE_CHECKING:
    from azure.data.tables import TableClient
    from azure.storage.queue import QueueClient

log = logging.getLogger(__name__)

MARK_PARTITION = "followup"
MAX_MARK_TRIES = 5


def check_queue_name(name: str, setting: str) -> None:
    """A name the Queue service accepts, with room for the host's ``-poison`` suffix (3 to 63 characters in all:
    https://learn.microsoft.com/rest/api/storageservices/naming-queues-and-metadata)."""
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,54}[a-z0-9]", name):
        raise ValueError(
            f"{setting} must be a storage queue name: 3 to 56 lowercase letters, digits and single hyphens, "
            f"starting and ending with a letter or digit (the host adds '-poison'), not {name!r}"
        )


def _since(watch: str) -> str:
    """When the watch began (the text after ``@``, an ISO time): later watches sort later."""
    return watch.rpartition("@")[2]


class QueueFollowUps:
    """``FollowUps`` over one storage queue (created on first use) and the marks in ``table``."""

    def __init__(self, connection: StorageConnection | str, queue: str, table: str, **client_options: Any) -> None:
        self._connection = as_connection(connection)
        self._queue_name = queue
        self._table_name = table
        self._options = client_options
        self._queue: QueueClient | None = None
        self._table: TableClient | None = None

    @property
    def queue(self) -> QueueClient:
        if self._queue is None:
            from azure.core.exceptions import ResourceExistsError
            from azure.storage.queue import TextBase64EncodePolicy

            client = self._connection.queue_client(
                self._queue_name, message_encode_policy=TextBase64EncodePolicy(), **self._options
            )
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            self._queue = client
        return self._queue

    @property
    def table(self) -> TableClient:
        if self._table is None:
            service = self._connection.table_service(**self._options)
            service.create_table_if_not_exists(self._table_name)
            self._table = service.get_table_client(self._table_name)
        return self._table

    def schedule(self, follow_up: FollowUp, delay: timedelta) -> bool:
        if not self._mark(follow_up):
            log.info(
                "run %s: follow-up %s %s #%d already scheduled; duplicate dropped",
                follow_up.run_id,
                follow_up.kind.value,
                follow_up.watch,
                follow_up.attempt,
            )
            return False
        self.queue.send_message(follow_up.to_json(), visibility_timeout=int(capped(delay).total_seconds()))
        return True

    def _mark(self, follow_up: FollowUp) -> bool:
        """Record ``follow_up`` as its watch's latest; False when it is not later than the one recorded."""
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            HttpResponseError,
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import UpdateMode

        key = f"{follow_up.run_id}|{follow_up.kind.value}"
        entity = {"PartitionKey": MARK_PARTITION, "RowKey": key, "watch": follow_up.watch, "attempt": follow_up.attempt}
        for _ in range(MAX_MARK_TRIES):
            try:
                stored = self.table.get_entity(MARK_PARTITION, key)
            except ResourceNotFoundError:
                try:
                    self.table.create_entity(entity)
                    return True
                except ResourceExistsError:
                    continue  # another writer marked it first: decide again on what it wrote
            watch, attempt = str(stored.get("watch", "")), int(stored.get("attempt", 0))
            if watch == follow_up.watch and attempt >= follow_up.attempt:
                return False
            if watch != follow_up.watch and _since(watch) > _since(follow_up.watch):
                return False  # the run is in a later watch already: this one is stale
            try:
                self.table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=stored.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return True
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
            except HttpResponseError as exc:  # some service versions answer a lost race with a bare 412
                if exc.status_code not in (404, 409, 412):
                    raise
        log.warning("run %s: follow-up mark contended %d times; not scheduled", follow_up.run_id, MAX_MARK_TRIES)
        return False
