"""azure-core errors become the app's; credentials and clients are chosen and built as the settings say."""

from __future__ import annotations

from dataclasses import replace

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from shared.exceptions import NotFoundError, PlatformError, TransientPlatformError
from shared.platform.azureml.errors import DEPLOYMENT_REMEDIES, azure_call, error_code, short, translate, with_remedy
from shared.settings import Settings
from tests.unit.shared.azureml import SDK_WARNINGS

pytestmark = pytest.mark.filterwarnings(SDK_WARNINGS)


def http_error(status: int, message: str) -> HttpResponseError:
    error = HttpResponseError(message=message)
    error.status_code = status
    return error


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_transient(status: int) -> None:
    assert isinstance(translate(http_error(status, "busy"), "doing it"), TransientPlatformError)


def test_connection_failures_are_transient() -> None:
    assert isinstance(translate(ServiceRequestError("connection reset"), "doing it"), TransientPlatformError)


def test_not_found_is_not_found_and_bad_requests_are_not_retried() -> None:
    missing = translate(ResourceNotFoundError(message="gone"), "reading job x")
    assert isinstance(missing, NotFoundError)
    refused = translate(http_error(400, "(BadArgument) instance_count must be >= 1"), "deploying")
    assert type(refused) is PlatformError
    assert refused.code == "BadArgument"
    assert str(refused) == "deploying: (BadArgument) instance_count must be >= 1"


def test_authentication_failures_point_at_the_identity() -> None:
    error = translate(ClientAuthenticationError(message="no managed identity endpoint"), "reading model")
    assert type(error) is PlatformError
    assert "managed identity" in str(error) and "docs/running-on-azure.md" in str(error)


def test_a_failed_sign_in_on_a_laptop_says_to_sign_in_not_to_check_a_function_app() -> None:
    # azure.identity's message when the person's chain (shared/identity.py) found no login on this machine.
    laptop = (
        "ChainedTokenCredential failed to retrieve a token from the included credentials. Attempted credentials: "
        "AzureCliCredential: Azure CLI not found on path AzureDeveloperCliCredential: Azure Developer CLI could "
        "not be found. ManagedIdentityCredential: ManagedIdentityCredential authentication unavailable."
    )
    error = str(translate(ClientAuthenticationError(message=laptop), "reading model"))
    assert "`az login`" in error and "Function" not in error


def test_error_codes_from_the_odata_error_the_prefix_or_the_text() -> None:
    assert error_code(http_error(409, "(OutOfQuota) not enough")) == "OutOfQuota"
    assert error_code(http_error(500, "container failed: ResourceNotReady after 3 probes")) == "ResourceNotReady"
    assert error_code(http_error(500, "something else")) is None
    assert error_code(http_error(409, "(OutOfCapacity) no capacity for the SKU")) == "OutOfCapacity"
    assert error_code(http_error(500, "deployment failed: OutOfCapacity in westus3")) == "OutOfCapacity"


def test_deployment_failures_carry_the_remedy_of_their_code() -> None:
    message = with_remedy("OutOfCapacity", "no capacity for Standard_NC24ads_A100_v4")
    assert message is not None and message.startswith("no capacity for Standard_NC24ads_A100_v4; remedy: ")
    assert "another SKU" in message and "deployment.instance_type" in message
    assert {"OutOfQuota", "OutOfCapacity", "ImageBuildFailure", "ResourceNotReady", "BadArgument"} <= set(
        DEPLOYMENT_REMEDIES
    )
    assert with_remedy("SomethingNew", "as the service said") == "as the service said"


def test_messages_are_short_and_carry_no_query_secrets() -> None:
    text = short("GET https://acct.blob.core.windows.net/c/b?sv=2024&sig=SECRETSIG&se=1 failed; code=ABC " + "x" * 500)
    assert "SECRETSIG" not in text and "ABC" not in text
    assert len(text) <= 300


def test_azure_call_translates() -> None:
    with pytest.raises(NotFoundError), azure_call("reading endpoint e"):
        raise ResourceNotFoundError(message="no endpoint")


def test_managed_identity_only_unless_a_persons_login_is_allowed(settings: Settings) -> None:
    from azure.identity import (
        AzureCliCredential,
        AzureDeveloperCliCredential,
        ChainedTokenCredential,
        ManagedIdentityCredential,
    )

    from shared.platform.azureml.clients import build_credential

    assert isinstance(build_credential(settings), ManagedIdentityCredential)
    chained = build_credential(replace(settings, allow_developer_credentials=True, azure_client_id="abc"))
    assert isinstance(chained, ChainedTokenCredential)
    # On a person's machine their own login answers first; the managed identity is the last resort.
    assert [type(c) for c in chained.credentials] == [
        AzureCliCredential,
        AzureDeveloperCliCredential,
        ManagedIdentityCredential,
    ]


def test_workspace_client_is_built_once_from_the_settings(settings: Settings) -> None:
    from azure.ai.ml import MLClient

    from shared.platform.azureml.clients import AzureClients, metrics_endpoint

    clients = AzureClients(settings, credential=object())  # type: ignore[arg-type]
    workspace = clients.workspace
    assert isinstance(workspace, MLClient)
    assert (workspace.subscription_id, workspace.resource_group_name, workspace.workspace_name) == (
        settings.azureml_subscription_id,
        settings.azureml_resource_group,
        settings.azureml_workspace_name,
    )
    assert clients.workspace is workspace
    assert metrics_endpoint("West Europe") == "https://westeurope.metrics.monitor.azure.com"
