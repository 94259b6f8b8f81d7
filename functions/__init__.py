"""Blueprints: one module per trigger family; handlers wrap the trigger object, call a service, log."""

from __future__ import annotations

import os

from shared.settings import DEFAULTS


def app_setting(name: str) -> str:
    """An app setting read at indexing time (schedules, container names), with the app's default."""
    return os.environ.get(name) or DEFAULTS[name]
