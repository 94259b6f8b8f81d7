"""The local webhook key: from AUTOPILOT_WEBHOOK_KEY, else generated once into ``<workdir>/webhook.key``.

Anything that posts to the local webhook (the local ML platform, tests) reads the key through
:func:`webhook_key_for`, so the key never needs to travel on a command line or into a log.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_FILENAME = "webhook.key"


def key_path(workdir: Path) -> Path:
    return workdir / KEY_FILENAME


def read_key_file(workdir: Path) -> str:
    """The key stored in ``<workdir>/webhook.key``; empty when there is none."""
    try:
        return key_path(workdir).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def ensure_webhook_key(workdir: Path, configured: str = "") -> str:
    """The configured key, else the stored one, else a new one written with mode 0600."""
    if configured:
        return configured
    path = key_path(workdir)
    existing = read_key_file(workdir)
    if existing:
        path.chmod(0o600)
        return existing
    workdir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key + "\n")
    path.chmod(0o600)
    return key


def webhook_key_for(configured: str, workdir: Path) -> str:
    """The key a client should send: the configured one, else the one ``autopilot up`` generated."""
    return configured or read_key_file(workdir)
