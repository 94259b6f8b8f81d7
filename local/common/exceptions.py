"""Errors of the local host and the local life cycle. Messages say what to do; none carries a secret."""

from __future__ import annotations

from shared.exceptions import AutopilotError


class LocalHostError(AutopilotError):
    """Base of every error the local host and its process helpers raise on purpose."""


class ScheduleError(LocalHostError, ValueError):
    """A timer schedule is not a valid six-field NCRONTAB expression."""


class HostConfigError(LocalHostError):
    """The host cannot start with the given settings (missing key, unknown connection setting)."""


class PortInUseError(LocalHostError):
    """A port the host or Azurite needs is already taken by another process."""


class NotInstalledError(LocalHostError):
    """A tool the local life cycle needs (Azurite from npm) is not installed in the project."""


class StartTimeoutError(LocalHostError):
    """A started process did not answer on its port in time, or exited while starting."""
