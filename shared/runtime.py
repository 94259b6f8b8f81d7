"""Composition root: builds the ledger, status store and platform adapter from settings, once per process.

Entry points (functions, CLI, local host) get their collaborators here. Adapters import their heavy SDKs
(azure.ai.ml, mlflow, torch) only when first built, never when this module is imported.
"""

from __future__ import annotations

import functools
import importlib
import logging
from datetime import timedelta
from typing import Any

from shared.platform.port import MLPlatform
from shared.runs import RunStore
from shared.settings import Settings

log = logging.getLogger(__name__)

# Adapter classes by setting value: "module:Class", built with the settings.
ADAPTERS = {
    "local": "local.platform.adapter:LocalPlatform",
    "azureml": "shared.platform.azureml.adapter:AzureMLPlatform",
}


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def run_store() -> RunStore:
    from shared.ledger.table import TableLedger
    from shared.status import BlobStatusStore

    s = settings()
    return RunStore(
        TableLedger(s.storage_connection, s.ledger_table),
        BlobStatusStore(s.storage_connection, s.status_container),
    )


def build_platform(s: Settings) -> MLPlatform:
    module_name, _, class_name = ADAPTERS[s.platform].partition(":")
    cls: Any = getattr(importlib.import_module(module_name), class_name)
    platform: MLPlatform = cls(s)
    return platform


@functools.cache
def platform() -> MLPlatform:
    return build_platform(settings())


def deploy_timeout() -> timedelta:
    return timedelta(minutes=settings().deploy_timeout_minutes)


def received_deadline() -> timedelta:
    return timedelta(minutes=settings().received_deadline_minutes)


def reset() -> None:
    """Forget built objects (tests and the local host change settings between runs)."""
    for built in (settings, run_store, platform):
        clear = getattr(built, "cache_clear", None)  # tests may have swapped one for a plain function
        if clear is not None:
            clear()
