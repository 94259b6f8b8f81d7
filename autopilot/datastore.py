"""Training data on an Azure ML datastore: ``prepare-dataset --upload`` puts prepared splits there and ``plan``
checks that a config's datastore paths exist, both with the person's own login.

A datastore URI (``azureml://datastores/<name>/paths/<path>``, the form the Azure ML samples give data in, e.g.
``azureml://datastores/workspaceblobstore/paths/ultrachat_200k_dataset/train_sft.jsonl``) names a blob
``<path>`` in the container the workspace's datastore ``<name>`` points at; ``workspaceblobstore`` is the
workspace's default. The datastore is resolved with the SDK (``MLClient.datastores.get``: account, container,
endpoint) and its blobs are written and read with azure-storage-blob under the caller's login, which needs
Storage Blob Data Contributor (upload) or Reader (check) on that storage account. No account key is fetched:
the project runs keyless, and a datastore's key would be a secret on a person's machine.

Why upload rather than print ``az ml data create``: that command uploads a local path under a generated
``LocalUpload/<hash>/`` folder and registers a data asset, so the configs' fixed datastore paths (the
samples') would not exist; the upload here writes exactly the paths it prints, again on every rerun.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.exceptions import AutopilotError, PlatformError
from shared.platform.azureml.errors import azure_call

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.blob import ContainerClient

log = logging.getLogger(__name__)

DEFAULT_DATASTORE = "workspaceblobstore"
# The short form and the long one (with the workspace's ARM path) name the same blob.
_DATASTORE_URI = re.compile(
    r"^azureml://(?:subscriptions/[^/]+/resourcegroups/[^/]+/(?:providers/microsoft\.machinelearningservices/)?"
    r"workspaces/[^/]+/)?datastores/(?P<name>[^/]+)/paths/(?P<path>[^?#]+)$",
    re.IGNORECASE,
)
BLOB_DATASTORE_TYPE = "AzureBlob"  # azure.ai.ml.constants.DatastoreType.AZURE_BLOB
# Blob storage's answers to a login without the data role (its REST error codes).
PERMISSION_CODES = ("AuthorizationPermissionMismatch", "AuthorizationFailure")


class DatastoreError(AutopilotError):
    """A datastore cannot be used for this; the message says which and why."""


@dataclass(frozen=True)
class DatastorePath:
    """A blob ``path`` in the datastore ``datastore``."""

    datastore: str
    path: str

    @property
    def uri(self) -> str:
        return f"azureml://datastores/{self.datastore}/paths/{self.path}"


def parse_datastore_uri(uri: str) -> DatastorePath | None:
    """The datastore and path a datastore URI names; None for anything else (a data asset, a URL)."""
    match = _DATASTORE_URI.match(uri.strip())
    if match is None:
        return None
    return DatastorePath(match.group("name"), match.group("path").strip("/"))


@dataclass(frozen=True)
class BlobLocation:
    """Where a blob datastore keeps its files: the account's blob endpoint and the container."""

    datastore: str
    account: str
    account_url: str
    container: str

    def client(self, credential: Any) -> ContainerClient:
        from azure.storage.blob import ContainerClient

        return ContainerClient(self.account_url, self.container, credential=credential)


def blob_location(workspace: Any, name: str) -> BlobLocation:
    """The account and container of the workspace's datastore ``name`` (``MLClient.datastores.get``)."""
    with azure_call(f"reading datastore {name} of the workspace"):
        store = workspace.datastores.get(name)
    kind = str(getattr(store.type, "value", store.type) or "")  # a DatastoreType (a str enum)
    if kind.lower() != BLOB_DATASTORE_TYPE.lower():
        raise DatastoreError(
            f"datastore {name} is of type {kind or 'unknown'}; only blob datastores ({BLOB_DATASTORE_TYPE}) are "
            f"read and written here (the workspace's default is {DEFAULT_DATASTORE})"
        )
    protocol = getattr(store, "protocol", None) or "https"
    account_url = f"{protocol}://{store.account_name}.blob.{store.endpoint}"
    return BlobLocation(name, str(store.account_name), account_url, str(store.container_name))


def upload_files(container: ContainerClient, prefix: str, files: Iterable[Path], datastore: str) -> list[str]:
    """Each file to ``<prefix>/<file name>`` in the container (replacing what is there); their datastore URIs."""
    uris = []
    for path in files:
        blob = f"{prefix.strip('/')}/{path.name}" if prefix.strip("/") else path.name
        with path.open("rb") as data, azure_call(f"uploading {path.name} to datastore {datastore}"):
            container.upload_blob(blob, data, overwrite=True)
        log.info("uploaded %s to %s", path, blob)
        uris.append(DatastorePath(datastore, blob).uri)
    return uris


@dataclass(frozen=True)
class DataCheck:
    """What the plan found for one ``data.<split>``: ``found``, ``missing`` or ``not_checked``, and why."""

    field: str
    uri: str
    outcome: str
    message: str


def _size(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size} bytes"


def check_paths(
    data: Mapping[str, str], locate: Callable[[str], ContainerClient] | None, *, why_not: str = ""
) -> list[DataCheck]:
    """Whether each datastore path in ``data`` (``{split: uri}``) exists. ``locate`` gives a datastore's
    container (``workspace_locator``); without one nothing is checked, for the reason ``why_not``."""
    checks: list[DataCheck] = []
    containers: dict[str, ContainerClient] = {}
    for split, uri in data.items():
        field = f"data.{split}"
        where = parse_datastore_uri(uri)
        if where is None:
            checks.append(DataCheck(field, uri, "not_checked", "not a datastore path (only those are checked)"))
            continue
        if locate is None:
            checks.append(DataCheck(field, uri, "not_checked", why_not))
            continue
        try:
            if where.datastore not in containers:
                containers[where.datastore] = locate(where.datastore)
            properties = _blob_properties(containers[where.datastore], where)
        except AutopilotError as exc:
            checks.append(DataCheck(field, uri, "not_checked", str(exc)))
            continue
        if properties is None:
            checks.append(DataCheck(field, uri, "missing", f"no blob {where.path} in datastore {where.datastore}"))
        else:
            checks.append(DataCheck(field, uri, "found", _size(int(properties.size or 0))))
    return checks


def workspace_locator(workspace: Any, credential: TokenCredential) -> Callable[[str], ContainerClient]:
    """A datastore's container in ``workspace``, reached with ``credential``."""
    return lambda name: blob_location(workspace, name).client(credential)


def _blob_properties(container: ContainerClient, where: DatastorePath) -> Any | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        with azure_call(f"reading {where.path} in datastore {where.datastore}"):
            try:
                return container.get_blob_client(where.path).get_blob_properties()
            except ResourceNotFoundError:
                return None
    except PlatformError as exc:
        if exc.code in PERMISSION_CODES:
            raise DatastoreError(
                f"your login may not read datastore {where.datastore} ({container.account_name}): it needs "
                "Storage Blob Data Reader on that storage account"
            ) from None
        raise
