"""App settings, read from the environment (Functions app settings; ``local.settings.json`` locally).

Every setting the app reads is here, with its local default, and listed in ``local.settings.sample.json``
(a test keeps the two in step). Secrets (connection strings, keys) are read here and never logged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

# Azurite's published development account (documented by Microsoft; not a secret). The full form is used
# because older azure-storage-blob releases reject ``UseDevelopmentStorage=true``.
AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)

DEFAULTS: dict[str, str] = {
    "AzureWebJobsStorage": AZURITE_CONNECTION_STRING,
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AUTOPILOT_CONFIG_CONTAINER": "training-configs",
    "AUTOPILOT_STATUS_CONTAINER": "training-status",
    "AUTOPILOT_LEDGER_TABLE": "autopilotruns",
    "AUTOPILOT_RECONCILE_SCHEDULE": "0 */5 * * * *",
    "AUTOPILOT_CLEANUP_SCHEDULE": "0 */15 * * * *",
    "AUTOPILOT_PLATFORM": "",
    "AUTOPILOT_WORKSPACE_TOPIC": "",
    "AUTOPILOT_WORKDIR": ".autopilot",
    "AUTOPILOT_DATA_ROOT": ".",
    "AUTOPILOT_HOST_PORT": "7071",
    "AUTOPILOT_WEBHOOK_URL": "http://127.0.0.1:7071/runtime/webhooks/EventGrid",
    "AUTOPILOT_WEBHOOK_KEY": "",
    "AUTOPILOT_BLOB_POLL_SECONDS": "2",
    "AUTOPILOT_BLOB_SOURCE": "LogsAndContainerScan",
    "AUTOPILOT_DEPLOY_TIMEOUT_MINUTES": "60",
    "AUTOPILOT_MAX_SUBMIT_ATTEMPTS": "5",
    "AUTOPILOT_LOCAL_DTYPE": "auto",
    "AZUREML_SUBSCRIPTION_ID": "",
    "AZUREML_RESOURCE_GROUP": "",
    "AZUREML_WORKSPACE_NAME": "",
    "AZUREML_REGISTRY": "azureml",
    "AZURE_CLIENT_ID": "",
    "AUTOPILOT_ALLOW_DEVELOPER_CREDENTIALS": "false",
}

SECRET_SETTINGS = frozenset({"AzureWebJobsStorage", "AUTOPILOT_WEBHOOK_KEY"})


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    storage_connection: str
    config_container: str
    status_container: str
    ledger_table: str
    reconcile_schedule: str
    cleanup_schedule: str
    platform: str  # "local" or "azureml"
    workspace_topic: str
    workdir: Path
    data_root: Path
    host_port: int
    webhook_url: str
    webhook_key: str
    blob_poll_seconds: float
    deploy_timeout_minutes: int
    max_submit_attempts: int
    azureml_subscription_id: str
    azureml_resource_group: str
    azureml_workspace_name: str
    azureml_registry: str
    azure_client_id: str
    allow_developer_credentials: bool

    def __repr__(self) -> str:  # secrets stay out of logs and tracebacks
        shown = ", ".join(
            f"{f.name}=***"
            if f.name in {"storage_connection", "webhook_key"}
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"Settings({shown})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env

        def get(key: str) -> str:
            value = source.get(key)
            return value if value not in (None, "") else DEFAULTS[key]

        platform = get("AUTOPILOT_PLATFORM").strip().lower()
        if not platform:
            platform = "azureml" if get("AZUREML_WORKSPACE_NAME") else "local"
        if platform not in {"local", "azureml"}:
            raise ValueError(f"AUTOPILOT_PLATFORM must be 'local' or 'azureml', not {platform!r}")
        return cls(
            storage_connection=get("AzureWebJobsStorage"),
            config_container=get("AUTOPILOT_CONFIG_CONTAINER"),
            status_container=get("AUTOPILOT_STATUS_CONTAINER"),
            ledger_table=get("AUTOPILOT_LEDGER_TABLE"),
            reconcile_schedule=get("AUTOPILOT_RECONCILE_SCHEDULE"),
            cleanup_schedule=get("AUTOPILOT_CLEANUP_SCHEDULE"),
            platform=platform,
            workspace_topic=get("AUTOPILOT_WORKSPACE_TOPIC"),
            workdir=Path(get("AUTOPILOT_WORKDIR")).resolve(),
            data_root=Path(get("AUTOPILOT_DATA_ROOT")).resolve(),
            host_port=int(get("AUTOPILOT_HOST_PORT")),
            webhook_url=get("AUTOPILOT_WEBHOOK_URL"),
            webhook_key=get("AUTOPILOT_WEBHOOK_KEY"),
            blob_poll_seconds=float(get("AUTOPILOT_BLOB_POLL_SECONDS")),
            deploy_timeout_minutes=int(get("AUTOPILOT_DEPLOY_TIMEOUT_MINUTES")),
            max_submit_attempts=int(get("AUTOPILOT_MAX_SUBMIT_ATTEMPTS")),
            azureml_subscription_id=get("AZUREML_SUBSCRIPTION_ID"),
            azureml_resource_group=get("AZUREML_RESOURCE_GROUP"),
            azureml_workspace_name=get("AZUREML_WORKSPACE_NAME"),
            azureml_registry=get("AZUREML_REGISTRY"),
            azure_client_id=get("AZURE_CLIENT_ID"),
            allow_developer_credentials=_bool(get("AUTOPILOT_ALLOW_DEVELOPER_CREDENTIALS")),
        )


def load_local_settings(path: Path) -> None:
    """Put ``Values`` of a ``local.settings.json`` into the environment, without overriding what is set."""
    if not path.is_file():
        return
    values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    for key, value in values.items():
        if isinstance(value, str) and value and key not in os.environ:
            os.environ[key] = value
