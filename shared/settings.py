"""App settings, read from the environment (Functions app settings; ``local.settings.json`` locally).

Each setting is declared once, as a field of ``Settings`` carrying its environment name, its local default
and whether it is a secret. ``DEFAULTS`` and ``local.settings.sample.json`` are derived from those fields
(``python -m shared.settings --write-sample`` rewrites the sample; a test keeps it current). Secrets
(connection strings, keys) are read here and never logged.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.storage import StorageConnection

# Azurite's published development account (documented by Microsoft; not a secret). The full form is used
# because older azure-storage-blob releases reject ``UseDevelopmentStorage=true``.
AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


STORAGE_SETTING = "AzureWebJobsStorage"
QUOTA_CHECK_MODES = ("reject", "warn", "off")
LOCAL_DTYPES = ("auto", "float32", "bfloat16")
TRAIN_STREAMS_SETTING = "AUTOPILOT_LOCAL_TRAIN_STREAMS"  # read by local/platform/training/streams.py


def setting(env: str, default: str, *, secret: bool = False) -> Any:
    """A ``Settings`` field read from ``env``; ``default`` applies when the variable is unset or empty."""
    return field(metadata={"env": env, "default": default, "secret": secret})


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


_CONVERT: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": _bool,
    "Path": lambda v: Path(v).resolve(),
}


@dataclass(frozen=True)
class Settings:
    storage_connection: str = setting("AzureWebJobsStorage", AZURITE_CONNECTION_STRING, secret=True)
    # The Functions identity-based form of the same connection (shared/storage.py), used when
    # AzureWebJobsStorage itself is unset: on Azure the app then runs without any storage key.
    storage_account_name: str = setting("AzureWebJobsStorage__accountName", "")
    storage_blob_service_uri: str = setting("AzureWebJobsStorage__blobServiceUri", "")
    storage_queue_service_uri: str = setting("AzureWebJobsStorage__queueServiceUri", "")
    storage_table_service_uri: str = setting("AzureWebJobsStorage__tableServiceUri", "")
    storage_credential: str = setting("AzureWebJobsStorage__credential", "")
    storage_client_id: str = setting("AzureWebJobsStorage__clientId", "")
    # Read by the Functions host itself; declared so the sample lists it.
    worker_runtime: str = setting("FUNCTIONS_WORKER_RUNTIME", "python")
    config_container: str = setting("AUTOPILOT_CONFIG_CONTAINER", "training-configs")
    status_container: str = setting("AUTOPILOT_STATUS_CONTAINER", "training-status")
    ledger_table: str = setting("AUTOPILOT_LEDGER_TABLE", "autopilotruns")
    reconcile_schedule: str = setting("AUTOPILOT_RECONCILE_SCHEDULE", "0 */5 * * * *")
    cleanup_schedule: str = setting("AUTOPILOT_CLEANUP_SCHEDULE", "0 */15 * * * *")
    # "local" or "azureml"; empty: azureml when a workspace is named, else local.
    platform: str = setting("AUTOPILOT_PLATFORM", "")
    workspace_topic: str = setting("AUTOPILOT_WORKSPACE_TOPIC", "")
    workdir: Path = setting("AUTOPILOT_WORKDIR", ".autopilot")
    data_root: Path = setting("AUTOPILOT_DATA_ROOT", ".")
    host_port: int = setting("AUTOPILOT_HOST_PORT", "7071")
    webhook_url: str = setting("AUTOPILOT_WEBHOOK_URL", "http://127.0.0.1:7071/runtime/webhooks/EventGrid")
    webhook_key: str = setting("AUTOPILOT_WEBHOOK_KEY", "", secret=True)
    # Local host only. Short, because a pass over an unchanged container costs one listing.
    blob_poll_seconds: float = setting("AUTOPILOT_BLOB_POLL_SECONDS", "0.5")
    # Read when the app is indexed (functions/__init__.py): the blob trigger's source.
    blob_source: str = setting("AUTOPILOT_BLOB_SOURCE", "LogsAndContainerScan")
    deploy_timeout_minutes: int = setting("AUTOPILOT_DEPLOY_TIMEOUT_MINUTES", "60")
    # Follow-ups (docs/follow-ups.md): a run that starts something the app must watch schedules its own check
    # for when the answer is due, on this storage queue. Off: only the timers look (every 5 and 15 minutes).
    follow_ups: bool = setting("AUTOPILOT_FOLLOW_UPS", "true")
    # Read when the app is indexed (functions/followups.py), as the queue trigger's queue name.
    follow_up_queue: str = setting("AUTOPILOT_FOLLOW_UP_QUEUE", "autopilot-followups")
    # Each timer sweep stops starting work after this many seconds: below the Functions timeout (5 minutes by
    # default on Consumption, 10 at most) with room for the calls in flight; the rest waits for the next sweep.
    sweep_budget_seconds: float = setting("AUTOPILOT_SWEEP_BUDGET_SECONDS", "240")
    # Runs a reconcile sweep handles at the same time: each waits on platform calls, not on the CPU.
    sweep_concurrency: int = setting("AUTOPILOT_SWEEP_CONCURRENCY", "8")
    max_submit_attempts: int = setting("AUTOPILOT_MAX_SUBMIT_ATTEMPTS", "5")
    # The Standard Webhooks secret that signs the notifications sent to the configs' `notify.webhooks`
    # (whsec_<base64>, or any text: its UTF-8 bytes are the key); see docs/notifications.md.
    notify_signing_key: str = setting("AUTOPILOT_NOTIFY_SIGNING_KEY", "", secret=True)
    # The delivery worker's timer (functions/timers.py): how often owed notifications are looked at. A
    # notification waits at most this long for its first try; retries follow shared.notify.RETRY_AFTER.
    notify_schedule: str = setting("AUTOPILOT_NOTIFY_SCHEDULE", "*/15 * * * * *")
    # Whether webhooks may be loopback, private, link-local or metadata addresses (shared/notify_http.py).
    # Off on Azure; the local stack and tests, whose receivers listen on 127.0.0.1, turn it on.
    notify_allow_private_addresses: bool = setting("AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES", "false")
    # The Event Grid custom topic endpoints a config's `notify.event_grid_topic` may name, comma-separated; a
    # config naming any other is rejected. Empty: configs name no topic. The app's credentials go to these only.
    event_grid_topics: str = setting("AUTOPILOT_EVENT_GRID_TOPICS", "")
    # Access key of the one topic in AUTOPILOT_EVENT_GRID_TOPICS; empty: the app's managed identity publishes
    # (it needs the "EventGrid Data Sender" role on each topic).
    event_grid_topic_key: str = setting("AUTOPILOT_EVENT_GRID_TOPIC_KEY", "", secret=True)
    # Quota and capacity checks at submit (Azure ML): reject | warn | off. Reject, because the failure it
    # prevents (OutOfQuota at deploy) comes after the GPU hours are spent; a refused submit costs one resubmit.
    quota_check: str = setting("AUTOPILOT_QUOTA_CHECK", "reject")
    # A JSON file of VM prices laid over the shipped table (shared/prices.json; same shape) for cost estimates.
    price_table: str = setting("AUTOPILOT_PRICE_TABLE", "")
    # Reconcile fails a run still `received` this long after its last write (a submit that never finished).
    received_deadline_minutes: int = setting("AUTOPILOT_RECEIVED_DEADLINE_MINUTES", "30")
    # Reconcile cancels an app-tagged job with no ledger row (an orphan) once it has been one this long.
    orphan_grace_minutes: int = setting("AUTOPILOT_ORPHAN_GRACE_MINUTES", "60")
    # Local platform only: the compute dtype of training and serving (auto | float32 | bfloat16).
    local_dtype: str = setting("AUTOPILOT_LOCAL_DTYPE", "auto")
    # Local platform only: rows of a training micro-batch computed at once on CPU, one thread each (auto: one
    # per intra-op thread; 1: a single row). The result is the same; see local/platform/training/streams.py.
    local_train_streams: str = setting(TRAIN_STREAMS_SETTING, "auto")
    # Local platform only: training jobs that run at once (0: one per 2 cores and 4 GiB of memory, at least
    # one); the others wait, Queued, and start in submission order as slots free up.
    local_max_jobs: int = setting("AUTOPILOT_LOCAL_MAX_JOBS", "0")
    # Local platform only: how many times a job whose process died without reporting (killed, out of memory)
    # is restarted from its latest checkpoint before it is failed, as Azure ML retries a job on a lost node.
    local_job_restarts: int = setting("AUTOPILOT_LOCAL_JOB_RESTARTS", "2")
    azureml_subscription_id: str = setting("AZUREML_SUBSCRIPTION_ID", "")
    azureml_resource_group: str = setting("AZUREML_RESOURCE_GROUP", "")
    azureml_workspace_name: str = setting("AZUREML_WORKSPACE_NAME", "")
    azureml_registry: str = setting("AZUREML_REGISTRY", "azureml")
    azure_client_id: str = setting("AZURE_CLIENT_ID", "")
    # A person's login before the managed identity (shared/identity.py). Never on the Function App; the autopilot
    # CLI asks for it itself (autopilot/settings.py), so only a local host on a laptop against real storage reads it.
    allow_developer_credentials: bool = setting("AUTOPILOT_ALLOW_DEVELOPER_CREDENTIALS", "false")

    def __repr__(self) -> str:  # secrets stay out of logs and tracebacks
        shown = ", ".join(
            f"{f.name}=***" if f.metadata["secret"] else f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
        )
        return f"Settings({shown})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get(f.metadata["env"]) or f.metadata["default"]
            try:
                values[f.name] = _CONVERT[str(f.type)](raw)
            except ValueError:
                kind = {"int": "an integer", "float": "a number"}.get(str(f.type), str(f.type))
                raise ValueError(f"{f.metadata['env']} must be {kind}, not {raw!r}") from None
        platform = values["platform"].strip().lower()
        if not platform:
            platform = "azureml" if values["azureml_workspace_name"] else "local"
        if platform not in {"local", "azureml"}:
            raise ValueError(f"AUTOPILOT_PLATFORM must be 'local' or 'azureml', not {platform!r}")
        values["platform"] = platform
        quota = values["quota_check"].strip().lower()
        if quota not in QUOTA_CHECK_MODES:
            raise ValueError(f"AUTOPILOT_QUOTA_CHECK must be one of {', '.join(QUOTA_CHECK_MODES)}, not {quota!r}")
        values["quota_check"] = quota
        dtype = values["local_dtype"].strip().lower() or "auto"
        if dtype not in LOCAL_DTYPES:
            raise ValueError(f"AUTOPILOT_LOCAL_DTYPE must be one of {', '.join(LOCAL_DTYPES)}, not {dtype!r}")
        values["local_dtype"] = dtype
        streams = values["local_train_streams"].strip().lower() or "auto"
        if streams != "auto" and not (streams.isdigit() and int(streams) >= 1):
            raise ValueError(
                f"{TRAIN_STREAMS_SETTING} must be auto or a whole number of streams of at least 1, not {streams!r}"
            )
        values["local_train_streams"] = streams
        topics = [t for t in values["event_grid_topics"].split(",") if t.strip()]
        if values["event_grid_topic_key"] and len(topics) != 1:
            raise ValueError(
                "AUTOPILOT_EVENT_GRID_TOPIC_KEY is the access key of one topic: set AUTOPILOT_EVENT_GRID_TOPICS to "
                f"that topic's endpoint alone (it names {len(topics)}), or leave the key empty to publish with the "
                "app's identity"
            )
        identity = [f.metadata["env"] for f in fields(cls) if f.metadata["env"].startswith(f"{STORAGE_SETTING}__")]
        if not source.get(STORAGE_SETTING) and any(source.get(name) for name in identity):
            # As the Functions host does: no connection string, so the identity-based settings apply, and the
            # Azurite default must not win over them.
            values["storage_connection"] = ""
        return cls(**values)

    def storage(self) -> StorageConnection:
        """The app's storage account (``AzureWebJobsStorage``): connection string or identity-based."""
        from shared.storage import StorageConnection

        connection = StorageConnection(
            connection_string=self.storage_connection,
            account_name=self.storage_account_name,
            blob_service_uri=self.storage_blob_service_uri,
            queue_service_uri=self.storage_queue_service_uri,
            table_service_uri=self.storage_table_service_uri,
            credential_kind=self.storage_credential.strip().lower(),
            client_id=self.storage_client_id,
            allow_developer_credentials=self.allow_developer_credentials,
        )
        connection.check(STORAGE_SETTING)
        return connection


DEFAULTS: dict[str, str] = {f.metadata["env"]: f.metadata["default"] for f in fields(Settings)}
SECRETS: frozenset[str] = frozenset(f.metadata["env"] for f in fields(Settings) if f.metadata["secret"])


def setting_value(env_name: str, env: Mapping[str, str] | None = None) -> str:
    """One setting's raw value, or its default (for code that runs before ``Settings`` can be built)."""
    return (os.environ if env is None else env).get(env_name) or DEFAULTS[env_name]


def sample_document() -> dict[str, Any]:
    """``local.settings.sample.json``: every setting with its local default."""
    return {"IsEncrypted": False, "Values": dict(DEFAULTS)}


def read_local_settings(path: Path) -> dict[str, str]:
    """The non-empty text ``Values`` of a ``local.settings.json`` (none when there is no file)."""
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read as JSON ({exc})") from None
    values = document.get("Values", {}) if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise ValueError(f'{path}: "Values" must be an object of setting names and values')
    return {str(key): value for key, value in values.items() if isinstance(value, str) and value}


def load_local_settings(path: Path) -> None:
    """Put ``Values`` of a ``local.settings.json`` into the environment, without overriding what is set."""
    for key, value in read_local_settings(path).items():
        if key not in os.environ:
            os.environ[key] = value


def main() -> None:
    parser = argparse.ArgumentParser(description="Print or rewrite local.settings.sample.json from the settings.")
    parser.add_argument("--write-sample", type=Path, nargs="?", const=Path("local.settings.sample.json"))
    args = parser.parse_args()
    text = json.dumps(sample_document(), indent=2) + "\n"
    if args.write_sample:
        args.write_sample.write_text(text, encoding="utf-8")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
