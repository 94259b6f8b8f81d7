"""Blueprints: one module per trigger family; handlers wrap the trigger object, call a service, log."""

from __future__ import annotations

from shared.settings import setting_value


def app_setting(name: str) -> str:
    """An app setting read at indexing time (schedules, container names), with the app's default."""
    return setting_value(name)
