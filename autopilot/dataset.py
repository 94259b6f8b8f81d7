"""``autopilot prepare-dataset``: download, slice and validate a chat dataset into ``<split>.jsonl`` files, and
with ``--upload`` put them on the workspace's datastore where a config names them (autopilot/datastore.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from autopilot.datastore import DEFAULT_DATASTORE, PERMISSION_CODES, blob_location, upload_files
from shared.exceptions import AutopilotError, PlatformError

UPLOAD_ROLE = "Storage Blob Data Contributor"


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 1


def upload_prepared(files: list[Path], datastore: str, prefix: str) -> int:
    """The prepared files to ``<prefix>/`` on the workspace's datastore, with the person's login."""
    from shared import runtime
    from shared.platform.azureml.clients import AzureClients

    clients = AzureClients(runtime.settings())  # the CLI's settings: the person's login (autopilot/settings.py)
    try:
        location = blob_location(clients.workspace, datastore)
    except AutopilotError as exc:
        return _fail(f"prepare-dataset --upload: {exc}")
    try:
        uris = upload_files(location.client(clients.credential), prefix, files, datastore)
    except PlatformError as exc:
        if exc.code not in PERMISSION_CODES:
            return _fail(f"prepare-dataset --upload: {exc}")
        return _fail(
            f"prepare-dataset --upload: your login may not write to datastore {datastore} (storage account "
            f"{location.account}); it needs {UPLOAD_ROLE} there:\n"
            f'  az role assignment create --role "{UPLOAD_ROLE}" '
            '--assignee "$(az ad signed-in-user show --query id -o tsv)" '
            f'--scope "$(az storage account show --name {location.account} --query id -o tsv)"'
        )
    print(f"uploaded to datastore {datastore} ({location.account_url}, container {location.container}):")
    for uri in uris:
        print(f"  {uri}")
    print("name them in a config as data.train / data.test (samples/phi4-ultrachat.yaml)")
    return 0


def cmd_prepare_dataset(args: argparse.Namespace) -> int:
    from local.platform.dataset import DatasetError, prepare_dataset

    if not 0 < args.split_pc <= 100:
        return _fail("--split-pc: must be a percentage in (0, 100]")
    import datasets

    # The report counts bad rows itself; the library's own error lines and bars would only repeat them.
    # (A row Arrow cannot parse is logged at ERROR by the loader before prepare_dataset reads row by row.)
    datasets.utils.logging.set_verbosity(logging.CRITICAL)
    datasets.disable_progress_bars()

    def show(update: Any) -> None:
        if isinstance(update, dict) and update.get("phase") == "split":
            print(f"  reading split {update.get('split')} ...", flush=True)
        elif isinstance(update, str):
            print(update, flush=True)

    try:
        report = prepare_dataset(args.dataset, Path(args.out), args.split_pc, progress=show)
    except DatasetError as exc:
        return _fail(f"prepare-dataset: {exc}")
    for line in report.summary_lines():
        print(line)
    if report.rows_written == 0:
        return 1
    if not args.upload:
        return 0
    files = [split.path for split in report.splits.values() if split.rows_written and split.path is not None]
    return upload_prepared(files, args.datastore, args.datastore_path or Path(args.out).resolve().name)


def register(sub: Any) -> None:
    p = sub.add_parser("prepare-dataset", help="download/slice/validate a chat dataset into <split>.jsonl files")
    p.add_argument("--dataset", required=True, help="a Hugging Face hub name, or a local file or directory")
    p.add_argument("--split-pc", type=float, default=100.0, help="percentage of every split to keep (default 100)")
    p.add_argument("--out", required=True, help="output directory for <split>.jsonl")
    p.add_argument(
        "--upload",
        action="store_true",
        help="then upload the files to the Azure ML workspace's datastore, with your login "
        f"(needs {UPLOAD_ROLE} on its storage account)",
    )
    p.add_argument(
        "--datastore",
        default=DEFAULT_DATASTORE,
        help=f"with --upload: the datastore (default {DEFAULT_DATASTORE}, the workspace's default)",
    )
    p.add_argument(
        "--datastore-path",
        metavar="PATH",
        help="with --upload: the folder in the datastore (default: the --out directory's name), so the files "
        "are azureml://datastores/<datastore>/paths/<PATH>/<split>.jsonl",
    )
    p.set_defaults(func=cmd_prepare_dataset)
