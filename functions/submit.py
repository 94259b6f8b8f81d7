"""Blob trigger: a training config dropped into the config container."""

from __future__ import annotations

import logging

import azure.functions as func

from functions import app_setting
from shared import runtime, telemetry
from shared.config.limits import MAX_CONFIG_BYTES

log = logging.getLogger(__name__)
bp = func.Blueprint()

CONFIG_CONTAINER = app_setting("AUTOPILOT_CONFIG_CONTAINER")


@bp.function_name("submit")
@bp.blob_trigger(
    arg_name="blob",
    path=f"{CONFIG_CONTAINER}/{{name}}",
    connection="AzureWebJobsStorage",
    source=func.BlobSource.EVENT_GRID
    if app_setting("AUTOPILOT_BLOB_SOURCE").lower() == "eventgrid"
    else func.BlobSource.LOGS_AND_CONTAINER_SCAN,
)
def submit(blob: func.InputStream) -> None:
    container, _, blob_name = (blob.name or "").partition("/")
    with telemetry.invocation("submit", config=blob_name):
        _submit(blob, container, blob_name)


def _submit(blob: func.InputStream, container: str, blob_name: str) -> None:
    # Read one byte past the limit so an oversized file is rejected without reading all of it.
    content = blob.read(MAX_CONFIG_BYTES + 1)
    props = getattr(blob, "blob_properties", None) or {}
    etag = props.get("ETag") or props.get("Etag") if isinstance(props, dict) else None
    from shared.notify_eventgrid import allowed_topics
    from shared.services.submit import submit_config  # services (and pydantic models) load on first use

    s = runtime.settings()
    record = submit_config(
        container=container or CONFIG_CONTAINER,
        blob_name=blob_name,
        content=content,
        etag=etag,
        store=runtime.run_store(),
        platform=runtime.platform(),
        data_root=s.data_root,
        max_attempts=s.max_submit_attempts,
        quota_check=s.quota_check,
        event_grid_topics=allowed_topics(s.event_grid_topics),
        notify_allow_private=s.notify_allow_private_addresses,
    )
    if record is not None:
        telemetry.bind(record)
        log.info("config %s: run %s is %s", blob_name, record.run_id, record.state.value)
