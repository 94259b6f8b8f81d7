"""Limits on dropped files; a module of its own so the function app can use them without pydantic."""

MAX_CONFIG_BYTES = 1024 * 1024
