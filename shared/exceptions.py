"""Errors of the app. Each names what went wrong in words a user can act on; none carries a secret."""

from __future__ import annotations

from dataclasses import dataclass


class AutopilotError(Exception):
    """Base of every error the app raises on purpose."""


@dataclass(frozen=True)
class FieldIssue:
    """One problem with one field: ``path`` as ``section.field[0]``, ``message`` the expectation."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(AutopilotError):
    """The training config is invalid; ``issues`` lists every problem with its field path."""

    def __init__(self, issues: list[FieldIssue]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(str(i) for i in self.issues) or "invalid config")


class RejectedError(AutopilotError):
    """The platform refused the run for a reason the user must fix (compute, model, data)."""

    def __init__(self, issues: list[FieldIssue]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(str(i) for i in self.issues) or "rejected")


class ModelTagError(RejectedError):
    """A foundation model tag could not be parsed safely."""


class ConcurrencyError(AutopilotError):
    """Another writer changed the ledger entity since it was read (ETag mismatch)."""


class AlreadyExistsError(AutopilotError):
    """The ledger entity already exists."""


class PlatformError(AutopilotError):
    """The ML platform failed; ``code`` is the platform's error code when it gave one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


class TransientPlatformError(PlatformError):
    """The ML platform failed in a way worth retrying (throttling, timeouts, 5xx)."""


class NotFoundError(PlatformError):
    """The platform has no such job, model, endpoint or deployment."""


class NotManagedError(PlatformError):
    """The resource exists but lacks the app's tags: the app never touches it."""


class RefusedAddressError(AutopilotError):
    """A notification URL leads to an address the app does not send to (loopback, private, link-local,
    metadata): refused, never retried."""
