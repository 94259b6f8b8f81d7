"""Small blob helpers shared by the CLI and the demo (lazy SDK imports)."""

from __future__ import annotations

import contextlib


def upload_config(connection_string: str, container: str, blob_name: str, data: bytes) -> None:
    """Upload (overwrite) a config blob, creating the container if needed."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string)
    client = service.get_container_client(container)
    with contextlib.suppress(ResourceExistsError):
        client.create_container()
    client.upload_blob(blob_name, data, overwrite=True)
