"""``prepare-dataset --upload`` and the plan's data check against a real blob container (Azurite): the files go
to the paths the samples name, a rerun replaces them, and a path that is not there is reported missing."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from autopilot.datastore import check_paths, upload_files
from local.platform.dataset import prepare_dataset

pytestmark = pytest.mark.azurite

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "ultrachat_sample"
PREFIX = "ultrachat_200k_dataset"


@pytest.fixture
def container(azurite: str) -> ContainerClient:
    client = ContainerClient.from_connection_string(azurite, f"azureml-blobstore-{uuid.uuid4().hex[:12]}")
    client.create_container()
    return client


def test_prepared_splits_land_where_the_samples_name_them_and_a_rerun_replaces_them(
    container: ContainerClient, tmp_path: Path
) -> None:
    report = prepare_dataset(str(SAMPLE), tmp_path / PREFIX, 100)
    files = sorted(split.path for split in report.splits.values() if split.path is not None)
    uris = upload_files(container, PREFIX, files, "workspaceblobstore")
    assert "azureml://datastores/workspaceblobstore/paths/ultrachat_200k_dataset/train_sft.jsonl" in uris
    blob = container.get_blob_client(f"{PREFIX}/train_sft.jsonl")
    assert blob.download_blob().readall() == (tmp_path / PREFIX / "train_sft.jsonl").read_bytes()

    (tmp_path / PREFIX / "train_sft.jsonl").write_text('{"messages": []}\n')
    assert upload_files(container, PREFIX, files, "workspaceblobstore") == uris  # idempotent: same paths
    assert blob.download_blob().readall() == b'{"messages": []}\n'

    checks = check_paths(
        {"train": uris[files.index(tmp_path / PREFIX / "train_sft.jsonl")], "test": uris[0].replace(PREFIX, "gone")},
        lambda name: container,
    )
    assert [(c.field, c.outcome) for c in checks] == [("data.train", "found"), ("data.test", "missing")]
    assert checks[0].message == "17 bytes"
    assert "no blob gone/" in checks[1].message
