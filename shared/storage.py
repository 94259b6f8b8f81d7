"""The app's storage account: a connection string (Azurite locally) or an identity-based connection.

Azure Functions reads a storage connection named ``AzureWebJobsStorage`` either as a connection string (the
setting itself) or, when that is unset, from the identity-based settings ``AzureWebJobsStorage__accountName``
(or ``__blobServiceUri`` / ``__queueServiceUri`` / ``__tableServiceUri``), ``__credential=managedidentity`` and
``__clientId`` for a user-assigned identity ("Connecting to host storage with an identity",
https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity).
The ledger, the status blobs, the CLI's uploads and the local host's blob polling build their clients here
from the same settings, so the app runs keyless exactly where its triggers do. The SDK imports are lazy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

IDENTITY_SUFFIXES = ("accountName", "blobServiceUri", "queueServiceUri", "tableServiceUri", "credential", "clientId")
MANAGED_IDENTITY = "managedidentity"


class StorageConfigError(ValueError):
    """The storage settings name neither a connection string nor an account."""


@dataclass(frozen=True)
class StorageConnection:
    """One storage connection; ``repr`` never shows the connection string (it holds the account key)."""

    connection_string: str = field(default="", repr=False)
    account_name: str = ""
    blob_service_uri: str = ""
    queue_service_uri: str = ""
    table_service_uri: str = ""
    credential_kind: str = ""  # "managedidentity", or empty: managed identity unless a person's login is allowed
    client_id: str = ""
    allow_developer_credentials: bool = False

    @property
    def uses_identity(self) -> bool:
        return not self.connection_string

    def __repr__(self) -> str:
        if not self.uses_identity:
            return "StorageConnection(connection string ***)"
        return f"StorageConnection(account={self.account_name or self.blob_service_uri!r}, identity)"

    @classmethod
    def from_settings(cls, name: str, env: Mapping[str, str], *, allow_developer_credentials: bool = False) -> Self:
        """The connection ``name`` as the Functions host reads it: ``env[name]`` or ``env[name + "__<x>"]``."""
        identity = {suffix: (env.get(f"{name}__{suffix}") or "").strip() for suffix in IDENTITY_SUFFIXES}
        connection = cls(
            connection_string=(env.get(name) or "").strip(),
            account_name=identity["accountName"],
            blob_service_uri=identity["blobServiceUri"],
            queue_service_uri=identity["queueServiceUri"],
            table_service_uri=identity["tableServiceUri"],
            credential_kind=identity["credential"].lower(),
            client_id=identity["clientId"],
            allow_developer_credentials=allow_developer_credentials,
        )
        connection.check(name)
        return connection

    def check(self, name: str = "AzureWebJobsStorage") -> None:
        if self.connection_string:
            return
        if not (self.account_name or self.blob_service_uri or self.queue_service_uri or self.table_service_uri):
            raise StorageConfigError(
                f"{name} is not set: give a connection string, or {name}__accountName (or "
                f"{name}__blobServiceUri, __queueServiceUri, __tableServiceUri) for an identity-based connection"
            )
        if self.credential_kind not in ("", MANAGED_IDENTITY):
            raise StorageConfigError(f"{name}__credential must be '{MANAGED_IDENTITY}', not {self.credential_kind!r}")

    def service_uri(self, service: str) -> str:
        """``https://<account>.<service>.core.windows.net`` unless the ``__<service>ServiceUri`` setting says."""
        explicit = {"blob": self.blob_service_uri, "queue": self.queue_service_uri, "table": self.table_service_uri}
        if explicit[service]:
            return explicit[service].rstrip("/")
        if not self.account_name:
            raise StorageConfigError(
                f"AzureWebJobsStorage__{service}ServiceUri or AzureWebJobsStorage__accountName is needed "
                f"for {service} storage"
            )
        return f"https://{self.account_name}.{service}.core.windows.net"

    def token_credential(self) -> TokenCredential:
        """The managed identity (user-assigned with ``__clientId``); a person's login first only where the
        settings allow it (shared/identity.py) and ``__credential`` does not insist on the managed identity."""
        from shared.identity import credential_chain

        person = self.allow_developer_credentials and self.credential_kind != MANAGED_IDENTITY
        return credential_chain(self.client_id, person=person)

    def blob_service(self, **kwargs: Any) -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient

        if self.connection_string:
            return BlobServiceClient.from_connection_string(self.connection_string, **kwargs)
        return BlobServiceClient(self.service_uri("blob"), credential=self.token_credential(), **kwargs)

    def table_service(self, **kwargs: Any) -> TableServiceClient:
        from azure.data.tables import TableServiceClient

        if self.connection_string:
            return TableServiceClient.from_connection_string(self.connection_string, **kwargs)
        return TableServiceClient(self.service_uri("table"), credential=self.token_credential(), **kwargs)

    def queue_client(self, queue: str, **kwargs: Any) -> QueueClient:
        from azure.storage.queue import QueueClient

        if self.connection_string:
            return QueueClient.from_connection_string(self.connection_string, queue, **kwargs)
        return QueueClient(self.service_uri("queue"), queue, credential=self.token_credential(), **kwargs)


def as_connection(connection: StorageConnection | str) -> StorageConnection:
    """Callers may still pass a plain connection string (tests, Azurite)."""
    return StorageConnection(connection_string=connection) if isinstance(connection, str) else connection


def upload_config(connection: StorageConnection | str, container: str, blob_name: str, data: bytes) -> None:
    """Upload (overwrite) a config blob, creating the container if needed."""
    from azure.core.exceptions import ResourceExistsError

    client = as_connection(connection).blob_service().get_container_client(container)
    with contextlib.suppress(ResourceExistsError):
        client.create_container()
    client.upload_blob(blob_name, data, overwrite=True)
