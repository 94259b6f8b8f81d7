"""The storage connection: a connection string or the Functions identity-based settings, never a leaked key."""

from __future__ import annotations

import pytest
from azure.identity import (
    AzureCliCredential,
    AzureDeveloperCliCredential,
    ChainedTokenCredential,
    ManagedIdentityCredential,
)

from shared.ledger.table import TableLedger
from shared.settings import AZURITE_CONNECTION_STRING, Settings
from shared.status import BlobStatusStore
from shared.storage import StorageConfigError, StorageConnection

IDENTITY_ENV = {
    "AzureWebJobsStorage__accountName": "stautopilot",
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
}


def test_identity_settings_win_over_the_azurite_default_when_no_connection_string_is_set() -> None:
    storage = Settings.from_env(IDENTITY_ENV).storage()
    assert storage.uses_identity and storage.account_name == "stautopilot"
    assert storage.service_uri("blob") == "https://stautopilot.blob.core.windows.net"
    assert storage.service_uri("table") == "https://stautopilot.table.core.windows.net"
    assert storage.service_uri("queue") == "https://stautopilot.queue.core.windows.net"


def test_a_connection_string_still_wins_as_on_the_functions_host() -> None:
    storage = Settings.from_env({**IDENTITY_ENV, "AzureWebJobsStorage": AZURITE_CONNECTION_STRING}).storage()
    assert not storage.uses_identity
    assert Settings.from_env({}).storage().connection_string == AZURITE_CONNECTION_STRING


def test_explicit_service_uris_are_used_as_given() -> None:
    env = {
        "AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net/",
        "AzureWebJobsStorage__tableServiceUri": "https://st.table.core.windows.net",
    }
    storage = Settings.from_env(env).storage()
    assert storage.service_uri("blob") == "https://st.blob.core.windows.net"
    with pytest.raises(StorageConfigError, match="queueServiceUri or AzureWebJobsStorage__accountName"):
        storage.service_uri("queue")


def test_the_clients_are_built_on_the_account_with_the_user_assigned_identity() -> None:
    storage = Settings.from_env(IDENTITY_ENV).storage()
    ledger = TableLedger(storage, "autopilotruns")
    status = BlobStatusStore(storage, "training-status")
    queue = storage.queue_client("webjobs-blobtrigger-poison")
    assert ledger._service.url.startswith("https://stautopilot.table.core.windows.net")
    assert status._service.url.startswith("https://stautopilot.blob.core.windows.net")
    assert queue.url.startswith("https://stautopilot.queue.core.windows.net/webjobs-blobtrigger-poison")
    assert isinstance(ledger._service.credential, ManagedIdentityCredential)


def test_a_persons_login_only_when_allowed_and_never_with_managedidentity_named() -> None:
    env = {"AzureWebJobsStorage__accountName": "st"}
    assert isinstance(Settings.from_env(env).storage().token_credential(), ManagedIdentityCredential)
    allowed = {**env, "AUTOPILOT_ALLOW_DEVELOPER_CREDENTIALS": "true"}
    chained = Settings.from_env(allowed).storage().token_credential()
    assert isinstance(chained, ChainedTokenCredential)
    assert [type(c) for c in chained.credentials] == [
        AzureCliCredential,
        AzureDeveloperCliCredential,
        ManagedIdentityCredential,
    ]
    forced = {**allowed, "AzureWebJobsStorage__credential": "managedidentity"}
    assert isinstance(Settings.from_env(forced).storage().token_credential(), ManagedIdentityCredential)


def test_bad_settings_are_named() -> None:
    with pytest.raises(StorageConfigError, match="AzureWebJobsStorage__credential must be 'managedidentity'"):
        Settings.from_env(
            {"AzureWebJobsStorage__accountName": "st", "AzureWebJobsStorage__credential": "key"}
        ).storage()
    with pytest.raises(StorageConfigError, match=r"X is not set: .* X__accountName"):
        StorageConnection.from_settings("X", {})


def test_no_secret_in_repr() -> None:
    text = repr(StorageConnection(connection_string=AZURITE_CONNECTION_STRING)) + repr(Settings.from_env({}))
    assert "AccountKey" not in text and "Eby8" not in text
