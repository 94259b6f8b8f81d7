"""The twin's JSON state files: atomic writes, cross-process locks and one typed, versioned record per file.

Several processes share these files (the host, the CLI, job processes, endpoint servers): a writer replaces a
file atomically, so a reader sees the old or the new content, never half of one; read-modify-write sequences
hold a ``file_lock``. Each file has one ``StateFile`` subclass, the only code that reads or writes it, with a
``schema_version``: a change of shape bumps the version and adds a ``migrate`` step from the one before,
instead of readers guessing from which keys are present. A file holds the fields that were given a value
(a field never written reads as its default).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError


class StateFileError(ValueError):
    """A state file that is not what its type reads: another schema version, or fields out of shape."""


def write_json_atomic(path: Path, data: Any, *, mode: int = 0o644) -> None:
    """Write JSON so a reader sees the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when the file is missing or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock across processes (the host, the CLI and tests may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class StateFile(BaseModel):
    """Base of a state file's record. A subclass declares ``schema_version: Literal[N] = N``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int

    @classmethod
    def current_version(cls) -> int:
        return int(cls.model_fields["schema_version"].default)

    @classmethod
    def migrate(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """``raw`` of an older schema version brought to the current one. No older version exists yet."""
        raise StateFileError(f"schema version {raw.get('schema_version')!r}; this app reads {cls.current_version()}")

    @classmethod
    def from_json_dict(cls, raw: dict[str, Any], source: str = "") -> Self:
        """The record in ``raw`` (migrated when older); StateFileError naming ``source`` and the field if not."""
        where = f"{source}: " if source else ""
        try:
            if raw.get("schema_version") != cls.current_version():
                raw = cls.migrate(raw)
            return cls.model_validate(raw)
        except StateFileError as exc:
            raise StateFileError(f"{where}{exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "the file"
            raise StateFileError(f"{where}{field}: {first['msg']}") from None

    @classmethod
    def load(cls, path: Path) -> Self | None:
        """The record in ``path``; None when there is no such file (or no JSON object in it)."""
        raw = read_json(path)
        return None if raw is None else cls.from_json_dict(raw, path.name)

    def changed(self, **fields: Any) -> Self:
        """A copy with ``fields`` changed, checked against the type (a misspelt field is an error)."""
        return self.model_validate({**self.model_dump(exclude_unset=True), **fields})

    def save(self, path: Path, *, mode: int = 0o644) -> None:
        """Write the record: the fields that were ever given a value (as a dict that is updated keeps its keys),
        and the schema version."""
        data = self.model_dump(mode="json", exclude_unset=True)
        write_json_atomic(path, {**data, "schema_version": self.current_version()}, mode=mode)
