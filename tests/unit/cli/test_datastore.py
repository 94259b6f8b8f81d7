"""Datastore URIs and the workspace's datastores (autopilot/datastore.py), with the SDK's own entities."""

from __future__ import annotations

from typing import Any

import pytest
from azure.ai.ml.entities import AccountKeyConfiguration, AzureBlobDatastore, AzureFileDatastore
from azure.core.exceptions import ResourceNotFoundError

from autopilot.datastore import DatastoreError, DatastorePath, blob_location, check_paths, parse_datastore_uri
from shared.exceptions import NotFoundError
from tests.unit.shared.azureml import SDK_WARNINGS

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)

SAMPLE_TRAIN = "azureml://datastores/workspaceblobstore/paths/ultrachat_200k_dataset/train_sft.jsonl"


class Datastores:
    """``MLClient.datastores`` over a workspace's datastores, by name."""

    def __init__(self, *stores: Any) -> None:
        self.stores = {store.name: store for store in stores}

    def get(self, name: str, *, include_secrets: bool = False) -> Any:
        if include_secrets:
            raise AssertionError("no datastore secret is ever asked for")
        if name not in self.stores:
            raise ResourceNotFoundError(f"DatastoreNotFound: {name}")
        return self.stores[name]


class Workspace:
    def __init__(self, *stores: Any) -> None:
        self.datastores = Datastores(*stores)


DEFAULT_STORE = AzureBlobDatastore(
    name="workspaceblobstore",
    account_name="stmlws123",
    container_name="azureml-blobstore-0000",
    credentials=AccountKeyConfiguration(account_key=None),
)


def test_the_samples_short_and_the_long_datastore_uris_name_the_same_blob() -> None:
    assert parse_datastore_uri(SAMPLE_TRAIN) == DatastorePath(
        "workspaceblobstore", "ultrachat_200k_dataset/train_sft.jsonl"
    )
    long = (
        "azureml://subscriptions/0000/resourcegroups/rg-ml/workspaces/ws/datastores/workspaceblobstore/paths/"
        "ultrachat_200k_dataset/train_sft.jsonl"
    )
    assert parse_datastore_uri(long) == parse_datastore_uri(SAMPLE_TRAIN)
    assert DatastorePath("workspaceblobstore", "ultrachat_200k_dataset/train_sft.jsonl").uri == SAMPLE_TRAIN
    for other in ("azureml:ultrachat:1", "https://example.org/train.jsonl", "data/train.jsonl"):
        assert parse_datastore_uri(other) is None


def test_the_default_datastore_resolves_to_its_account_and_container() -> None:
    location = blob_location(Workspace(DEFAULT_STORE), "workspaceblobstore")
    assert location.account == "stmlws123"
    assert location.account_url == "https://stmlws123.blob.core.windows.net"
    assert location.container == "azureml-blobstore-0000"


def test_a_datastore_that_is_not_blob_or_not_there_is_named() -> None:
    files = AzureFileDatastore(name="workspacefilestore", account_name="stmlws123", file_share_name="code")
    with pytest.raises(DatastoreError, match="datastore workspacefilestore is of type AzureFile"):
        blob_location(Workspace(DEFAULT_STORE, files), "workspacefilestore")
    with pytest.raises(NotFoundError, match="reading datastore nostore"):
        blob_location(Workspace(DEFAULT_STORE), "nostore")


def test_what_cannot_be_checked_says_why() -> None:
    data = {"train": SAMPLE_TRAIN, "test": "azureml:ultrachat-test:1"}
    checks = check_paths(data, None, why_not="offline")
    assert [(c.field, c.outcome, c.message) for c in checks] == [
        ("data.train", "not_checked", "offline"),
        ("data.test", "not_checked", "not a datastore path (only those are checked)"),
    ]

    def unreachable(name: str) -> Any:
        return blob_location(Workspace(), name)  # the workspace has no such datastore

    [check] = check_paths({"train": SAMPLE_TRAIN}, unreachable)
    assert check.outcome == "not_checked" and "reading datastore workspaceblobstore" in check.message
