"""The app's Azure credential: the Function's managed identity; a person's own login only where one is asked for.

One definition for every client that authenticates (Azure ML, Monitor, Event Grid, and storage through
``shared/storage.py``). The Function App reads ``allow_developer_credentials`` from its settings, where it is
``false`` unless someone sets ``AUTOPILOT_ALLOW_DEVELOPER_CREDENTIALS``, so it authenticates as its managed
identity and never falls back to someone's login. An entry point that runs on a person's machine (the
``autopilot`` CLI, ``autopilot/settings.py``) asks for the person's login explicitly by building its settings
with it allowed: then the Azure CLI login (``az login``) is tried first, the Azure Developer CLI's
(``azd auth login``) second, and the managed identity last (a CLI run on an Azure machine that has one).
azure.identity is imported when a credential is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

# Seconds to wait for `az` / `azd` to hand out a token: their first call on a cold machine can take a while.
LOGIN_PROCESS_TIMEOUT_S = 30


def credential_chain(managed_identity_client_id: str, *, person: bool) -> TokenCredential:
    """The managed identity (user-assigned with a client id); with ``person``, the person's logins before it."""
    from azure.identity import (
        AzureCliCredential,
        AzureDeveloperCliCredential,
        ChainedTokenCredential,
        ManagedIdentityCredential,
    )

    managed = ManagedIdentityCredential(client_id=managed_identity_client_id or None)
    if not person:
        return managed
    return ChainedTokenCredential(
        AzureCliCredential(process_timeout=LOGIN_PROCESS_TIMEOUT_S),
        AzureDeveloperCliCredential(process_timeout=LOGIN_PROCESS_TIMEOUT_S),
        managed,
    )


def sign_in_advice(failure: str) -> str:
    """What to do about a failed sign-in, for where it failed: azure.identity's message names each credential
    it tried, and only a person's chain (``credential_chain(person=True)``) tries the Azure CLI's login."""
    if "AzureCliCredential" in failure or "AzureDeveloperCliCredential" in failure:
        return (
            "sign in on this machine with `az login` (or `azd auth login`), as someone with the roles in "
            "docs/running-on-azure.md (Prerequisites)"
        )
    return "check the Function App's managed identity and its roles (docs/running-on-azure.md)"


class CredentialSettings(Protocol):
    """What of the settings (shared/settings.py) the credential depends on; storage.py builds one too, so this
    module imports neither."""

    @property
    def azure_client_id(self) -> str: ...

    @property
    def allow_developer_credentials(self) -> bool: ...


def build_credential(settings: CredentialSettings) -> TokenCredential:
    """Managed identity only, unless these settings allow a person's login (a person's machine)."""
    return credential_chain(settings.azure_client_id, person=settings.allow_developer_credentials)
