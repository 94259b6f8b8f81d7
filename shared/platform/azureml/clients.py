"""The credential and the Azure clients, built on first use and kept for the life of the process.

A Function worker serves many invocations: building ``MLClient`` (and its credential) once saves a token
round trip and a few hundred milliseconds per call. The credential is the Function's managed identity
(``shared.identity.build_credential``, re-exported here). Every client waits on throttling only as long as
``retries.BoundedRetryPolicy`` allows (``sdk_options``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from shared.exceptions import PlatformError
from shared.identity import build_credential
from shared.platform.azureml.errors import azure_call
from shared.platform.azureml.retries import sdk_options
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

# The SDK logs a warning for every experimental class it touches while serialising a job; they say nothing
# about this app's jobs and would drown the Function's log.
logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)


def metrics_endpoint(location: str) -> str:
    """The regional Azure Monitor metrics endpoint for resources in ``location`` (public cloud)."""
    region = "".join(location.split()).lower()
    return f"https://{region}.metrics.monitor.azure.com"


class AzureClients:
    """Workspace and registry ``MLClient``s, Monitor metrics clients and the workspace's MLflow client, created
    lazily and reused.

    Tests pass ready-made clients (``workspace=``, ``registries=``, ``metrics=``, a local ``tracking_uri=``) and
    never reach Azure.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        credential: TokenCredential | None = None,
        workspace: MLClient | None = None,
        registries: dict[str, MLClient] | None = None,
        metrics: Any = None,
        tracking_uri: str | None = None,
    ) -> None:
        self._settings = settings
        self._credential = credential
        self._workspace = workspace
        self._registries: dict[str, MLClient] = dict(registries or {})
        # One metrics client per region; a callable ``metrics(location)`` may be injected instead.
        self._metrics_factory = metrics
        self._metrics: dict[str, Any] = {}
        # The workspace's MLflow tracking URI (azureml://...); tests give a local store's.
        self._tracking_uri = tracking_uri
        self._mlflow: Any = None
        self._lock = threading.Lock()

    @property
    def credential(self) -> TokenCredential:
        with self._lock:
            if self._credential is None:
                self._credential = build_credential(self._settings)
            return self._credential

    @property
    def workspace(self) -> MLClient:
        if self._workspace is not None:
            return self._workspace
        s = self._settings
        missing = [
            key
            for key, value in (
                ("AZUREML_SUBSCRIPTION_ID", s.azureml_subscription_id),
                ("AZUREML_RESOURCE_GROUP", s.azureml_resource_group),
                ("AZUREML_WORKSPACE_NAME", s.azureml_workspace_name),
            )
            if not value
        ]
        if missing:
            raise PlatformError(f"the Azure ML workspace is not configured: set {', '.join(missing)}")
        from azure.ai.ml import MLClient

        credential = self.credential
        with self._lock:
            if self._workspace is None:
                log.info("connecting to Azure ML workspace %s", s.azureml_workspace_name)
                with azure_call(f"connecting to workspace {s.azureml_workspace_name}"):
                    self._workspace = MLClient(
                        credential,
                        subscription_id=s.azureml_subscription_id,
                        resource_group_name=s.azureml_resource_group,
                        workspace_name=s.azureml_workspace_name,
                        **sdk_options(),
                    )
            return self._workspace

    def registry(self, name: str) -> MLClient:
        if name in self._registries:
            return self._registries[name]
        from azure.ai.ml import MLClient

        credential = self.credential
        with self._lock:
            if name not in self._registries:
                log.info("connecting to Azure ML registry %s", name)
                # Unlike the workspace client, this one calls the service at once (registry discovery).
                with azure_call(f"connecting to registry {name}"):
                    self._registries[name] = MLClient(credential, registry_name=name, **sdk_options())
            return self._registries[name]

    def metrics(self, location: str) -> Any:
        """A ``MetricsClient`` for the region of the resources it queries."""
        if self._metrics_factory is not None:
            return self._metrics_factory(location)
        endpoint = metrics_endpoint(location)
        if endpoint in self._metrics:
            return self._metrics[endpoint]
        from azure.monitor.querymetrics import MetricsClient

        credential = self.credential
        with self._lock:
            if endpoint not in self._metrics:
                self._metrics[endpoint] = MetricsClient(endpoint, credential, **sdk_options())
            return self._metrics[endpoint]

    def mlflow(self) -> Any:
        """An ``MlflowClient`` on the workspace's tracking store (azureml-mlflow resolves ``azureml://`` URIs and
        signs in with the app's identity, ``AZURE_CLIENT_ID``)."""
        if self._mlflow is not None:
            return self._mlflow
        uri = self._tracking_uri
        if uri is None:
            name = self._settings.azureml_workspace_name
            with azure_call(f"reading workspace {name}"):
                found = getattr(self.workspace.workspaces.get(name), "mlflow_tracking_uri", None)
            if not isinstance(found, str) or not found:
                raise PlatformError(f"workspace {name} reports no MLflow tracking URI")
            uri = found
        from mlflow import MlflowClient

        with self._lock:
            if self._mlflow is None:
                self._mlflow = MlflowClient(tracking_uri=uri)
            return self._mlflow
