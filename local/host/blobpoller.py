"""Blob triggers by polling, with the runtime's bookkeeping kept in storage.

Each blob version (name + ETag) a blob-trigger function has handled gets a receipt blob in container
``azure-webjobs-hosts`` (``blobreceipts/<hostId>/Host.Functions.<function>/<container>/<blob>/<etag>``), so
a restarted host does not fire again and an overwrite (new ETag) does. A failing blob is retried on later
polls; the count lives in the receipt's metadata. After ``max_tries`` failures a message goes to queue
``webjobs-blobtrigger-poison`` and the blob version is left alone.

The blobs one pass finds are handled at the same time, up to ``concurrency`` (the runtime, too, runs blob
trigger invocations in parallel), so a drop never waits behind another config's submit; the versions of
one blob name stay in order, in one worker. A pass ends when all its invocations have.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.functions.blob import InputStream
from azure.storage.blob import BlobProperties, BlobServiceClient, ContainerClient
from azure.storage.blob import LinearRetry as BlobRetry
from azure.storage.queue import LinearRetry as QueueRetry
from azure.storage.queue import TextBase64EncodePolicy

from local.common.exceptions import HostConfigError
from local.host.discovery import FunctionSpec, Invocation, invoke
from shared.storage import StorageConnection, as_connection

log = logging.getLogger(__name__)

RECEIPTS_CONTAINER = "azure-webjobs-hosts"
POISON_QUEUE = "webjobs-blobtrigger-poison"
MAX_TRIES = 5
# Blobs of one pass handled at once: each invocation mostly waits on storage and the platform.
CONCURRENCY = 8
# The runtime hands the whole blob to the worker; a cap keeps one huge upload from exhausting the host.
MAX_BLOB_BYTES = 64 * 1024 * 1024

# The SDK's default retry waits 15 s and more between tries; a poll that fails should fail fast and let
# the next poll try again, so stopping the host is never held up by a storage outage.
FAST_RETRY_TOTAL = 2
FAST_RETRY_BACKOFF_S = 1

COMPLETED = "completed"
PENDING = "pending"
POISONED = "poisoned"


@dataclass(frozen=True)
class BlobPath:
    """A blob trigger's ``path``: the container and a name pattern (``{name}``, ``in/{name}.json``)."""

    container: str
    pattern: str
    prefix: str
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, function: str, path: str) -> BlobPath:
        container, slash, pattern = path.partition("/")
        if not container or not slash or not pattern:
            raise HostConfigError(
                f"function {function}: blob trigger path {path!r} must look like 'container/{{name}}'"
            )
        prefix = pattern.split("{", 1)[0]
        regex_text = ""
        # ``{x}`` binds any text, slashes included; the rest of the pattern is literal.
        for literal, placeholder in re.findall(r"([^{]*)(\{[^}]*\})?", pattern):
            regex_text += re.escape(literal) + (".+" if placeholder else "")
        return cls(container, pattern, prefix, re.compile(regex_text, re.DOTALL))

    def matches(self, blob_name: str) -> bool:
        return self.regex.fullmatch(blob_name) is not None


def _safe_segment(text: str) -> str:
    """A receipt path segment for any blob name: no ``/`` and no dot segments, bounded length."""
    encoded = quote(text, safe="").replace(".", "%2E")
    if len(encoded) > 600:
        return "sha256-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return encoded


def _strip_query(url: str) -> str:
    # A SAS connection string puts the token in the query; it must not reach the function or a log.
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _properties_dict(props: BlobProperties) -> dict[str, Any]:
    settings = props.content_settings
    return {
        "ETag": props.etag,
        "Length": props.size,
        "ContentLength": props.size,
        "ContentType": settings.content_type if settings else None,
        "ContentMD5": settings.content_md5.hex() if settings and settings.content_md5 else None,
        "BlobType": str(props.blob_type.value if hasattr(props.blob_type, "value") else props.blob_type),
        "LastModified": props.last_modified.isoformat() if props.last_modified else None,
        "CreatedOn": props.creation_time.isoformat() if props.creation_time else None,
    }


class ReceiptStore:
    """Receipts and failure counts per (function, container, blob, ETag) in the host's storage account."""

    def __init__(self, service: BlobServiceClient, host_id: str) -> None:
        self._container: ContainerClient = service.get_container_client(RECEIPTS_CONTAINER)
        self._host_id = host_id
        self._created = False

    def _prefix(self, function: str, container: str) -> str:
        return f"blobreceipts/{self._host_id}/Host.Functions.{function}/{container}/"

    def name(self, function: str, container: str, blob_name: str, etag: str) -> str:
        etag_segment = _safe_segment(etag.strip('"'))
        return f"{self._prefix(function, container)}{_safe_segment(blob_name)}/{etag_segment}"

    def load(self, function: str, container: str) -> dict[str, dict[str, str]]:
        """Every receipt of one function's container: receipt name -> metadata."""
        try:
            return {
                b.name: dict(b.metadata or {})
                for b in self._container.list_blobs(
                    name_starts_with=self._prefix(function, container), include=["metadata"]
                )
            }
        except ResourceNotFoundError:
            return {}

    def write(self, receipt: str, status: str, failures: int) -> None:
        if not self._created:
            with contextlib.suppress(ResourceExistsError):
                self._container.create_container()
            self._created = True
        self._container.upload_blob(
            receipt, b"", overwrite=True, metadata={"status": status, "failures": str(failures)}
        )


class BlobPoller:
    """Polls the containers of blob-trigger functions; :meth:`poll_once` does one pass in this thread."""

    def __init__(
        self,
        functions: Sequence[FunctionSpec],
        *,
        host_connection: StorageConnection | str,
        resolve_connection: Callable[[str], StorageConnection | str],
        host_id: str,
        max_tries: int = MAX_TRIES,
        max_blob_bytes: int = MAX_BLOB_BYTES,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self._services: dict[StorageConnection, BlobServiceClient] = {}
        self._targets: list[tuple[FunctionSpec, BlobPath, StorageConnection]] = []
        for spec in functions:
            path = BlobPath.parse(spec.name, str(spec.binding.get("path") or ""))
            connection = as_connection(resolve_connection(str(spec.binding.get("connection") or "AzureWebJobsStorage")))
            self._targets.append((spec, path, connection))
        self._receipts = ReceiptStore(self._service(as_connection(host_connection)), host_id)
        self._max_tries = max_tries
        self._max_blob_bytes = max_blob_bytes
        self._lock = threading.Lock()
        self._missing_logged: set[str] = set()
        # Receipts this host has read or written as finished: a pass over an unchanged container then costs
        # one listing, not a listing of every receipt too, so the poll interval can be short (drop-to-submit).
        self._finished: set[str] = set()
        self._concurrency = max(1, concurrency)

    def _service(self, connection: StorageConnection) -> BlobServiceClient:
        # A connection string or an identity-based connection (``<name>__accountName`` ...), as the runtime's.
        if connection not in self._services:
            self._services[connection] = connection.blob_service(
                retry_policy=BlobRetry(
                    backoff=FAST_RETRY_BACKOFF_S, retry_total=FAST_RETRY_TOTAL, random_jitter_range=0
                ),
            )
        return self._services[connection]

    def poll_once(self) -> list[Invocation]:
        """One pass over every blob-trigger container; returns the invocations it made."""
        # One pass at a time: the background loop and a test calling this must not both fire a blob.
        with self._lock:
            outcomes: list[Invocation] = []
            for spec, path, connection in self._targets:
                try:
                    outcomes.extend(self._poll_function(spec, path, connection))
                except AzureError as exc:
                    # One broken container (or a storage outage) must not stop the other functions.
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    log.warning("function %s: polling %s failed (%s); next poll", spec.name, path.container, reason)
            return outcomes

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Poll until ``stop`` is set; storage errors are logged and the next pass tries again."""
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("blob poll failed")
            stop.wait(interval_s)

    def _poll_function(self, spec: FunctionSpec, path: BlobPath, connection: StorageConnection) -> list[Invocation]:
        container = self._service(connection).get_container_client(path.container)
        try:
            blobs = list(container.list_blobs(name_starts_with=path.prefix or None))
        except ResourceNotFoundError:
            if path.container not in self._missing_logged:
                log.info("function %s: container %s does not exist yet; waiting for it", spec.name, path.container)
                self._missing_logged.add(path.container)
            return []
        self._missing_logged.discard(path.container)
        candidates = []
        for props in blobs:
            if not path.matches(props.name) or not props.etag:
                continue
            receipt = self._receipts.name(spec.name, path.container, props.name, props.etag)
            if receipt not in self._finished:
                candidates.append((props, receipt))
        if not candidates:
            return []
        receipts = self._receipts.load(spec.name, path.container)
        by_blob: dict[str, list[tuple[BlobProperties, str]]] = defaultdict(list)
        for props, receipt in candidates:
            meta = receipts.get(receipt)
            if meta is not None and meta.get("status") in (COMPLETED, POISONED):
                self._finished.add(receipt)
                continue
            by_blob[props.name].append((props, receipt))

        def fire_in_order(versions: list[tuple[BlobProperties, str]]) -> list[Invocation]:
            fired = []
            for props, receipt in versions:
                meta = receipts.get(receipt)
                failures = int(meta.get("failures", "0")) if meta else 0
                outcome = self._fire(spec, container, props, connection, receipt, failures)
                if outcome is not None:
                    fired.append(outcome)
            return fired

        groups = list(by_blob.values())
        if len(groups) <= 1 or self._concurrency == 1:
            return [outcome for versions in groups for outcome in fire_in_order(versions)]
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(groups)), thread_name_prefix="blob") as pool:
            # ``map`` re-raises a worker's storage error here, as the serial loop did: the pass is retried.
            return [outcome for fired in pool.map(fire_in_order, groups) for outcome in fired]

    def _fire(
        self,
        spec: FunctionSpec,
        container: ContainerClient,
        listed: BlobProperties,
        connection: StorageConnection,
        receipt: str,
        failures: int,
    ) -> Invocation | None:
        blob = container.get_blob_client(listed.name)
        target = f"{container.container_name}/{listed.name}"
        length = None
        if (listed.size or 0) > self._max_blob_bytes:
            log.warning(
                "blob %r is %s bytes; the function gets the first %s",
                target,
                listed.size,
                self._max_blob_bytes,
            )
            length = self._max_blob_bytes
        try:
            # Read exactly the listed version: if it changed since, the next pass sees the new ETag.
            download = blob.download_blob(
                offset=0 if length else None,
                length=length,
                etag=listed.etag,
                match_condition=MatchConditions.IfNotModified,
            )
            data = download.readall()
        except (ResourceModifiedError, ResourceNotFoundError):
            log.info("blob %r changed or vanished while polling; next pass", target)
            return None
        stream = InputStream(
            data=data,
            name=target,
            uri=_strip_query(blob.url),
            length=listed.size,
            blob_properties=_properties_dict(download.properties),
            metadata=dict(download.properties.metadata or {}),
        )
        outcome = invoke(spec, stream, target)
        if outcome.succeeded:
            self._receipts.write(receipt, COMPLETED, failures)
            self._finished.add(receipt)
            return outcome
        failures += 1
        if failures >= self._max_tries:
            # Message first, then the receipt: a crash in between repeats the message rather than losing it.
            self._poison(spec, connection, container.container_name, listed)
            self._receipts.write(receipt, POISONED, failures)
            self._finished.add(receipt)
            log.warning("function %s: blob %r failed %s times; sent to %s", spec.name, target, failures, POISON_QUEUE)
        else:
            self._receipts.write(receipt, PENDING, failures)
        return outcome

    def _poison(
        self, spec: FunctionSpec, connection: StorageConnection, container: str, listed: BlobProperties
    ) -> None:
        queue = connection.queue_client(
            POISON_QUEUE,
            message_encode_policy=TextBase64EncodePolicy(),
            retry_policy=QueueRetry(backoff=FAST_RETRY_BACKOFF_S, retry_total=FAST_RETRY_TOTAL, random_jitter_range=0),
        )
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
        blob_type = listed.blob_type.value if hasattr(listed.blob_type, "value") else listed.blob_type
        message = {
            "Type": "BlobTrigger",
            "FunctionId": f"Host.Functions.{spec.name}",
            "BlobType": str(blob_type),
            "ContainerName": container,
            "BlobName": listed.name,
            # Listings give the ETag bare, blob properties quoted; the runtime writes the quoted form.
            "ETag": listed.etag if listed.etag.startswith('"') else f'"{listed.etag}"',
        }
        queue.send_message(json.dumps(message))
