"""The app's Azure credential: the Function's managed identity, developer logins only when a setting allows them.

One definition for every client that authenticates as the app (Azure ML, Monitor, Event Grid). Developer
credentials (Azure CLI, VS Code, environment) are added only when ``AUTOPILOT_ALLOW_DEVELOPER_CREDENTIALS=true``,
so a production app never falls back to someone's login. azure.identity is imported when a credential is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


def build_credential(settings: Settings) -> TokenCredential:
    """Managed identity first; developer credentials only when the setting allows them."""
    from azure.identity import ChainedTokenCredential, DefaultAzureCredential, ManagedIdentityCredential

    managed = ManagedIdentityCredential(client_id=settings.azure_client_id or None)
    if not settings.allow_developer_credentials:
        return managed
    developer = DefaultAzureCredential(
        exclude_managed_identity_credential=True,
        exclude_interactive_browser_credential=True,
    )
    return ChainedTokenCredential(managed, developer)
