"""Azure SDK errors translated to the app's: retryable, missing, or a platform failure with its code.

Messages are cut short and never include request URLs with credentials: azure-core's messages carry the
service's error text (code and message), which holds no keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.exceptions import NotFoundError, PlatformError, TransientPlatformError

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
KNOWN_CODES = (
    "OutOfQuota",
    "ImageBuildFailure",
    "BadArgument",
    "ResourceNotReady",
    "ResourceNotFound",
    "OperationCanceled",
)
MAX_MESSAGE = 300
_CODE_PREFIX = re.compile(r"^\s*\((\w+)\)")
_SECRETISH = re.compile(r"(?i)(sig|code|key|token|secret|password)=[^&\s]+")


def short(text: str) -> str:
    """One line, bounded, with query-string secrets masked (a SAS or ``code=`` URL never leaks)."""
    line = " ".join(str(text).split())
    line = _SECRETISH.sub(lambda m: f"{m.group(1)}=***", line)
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def error_code(exc: BaseException) -> str | None:
    """The service's error code: the OData error, a ``(Code)`` message prefix, or a known code named inside."""
    odata = getattr(exc, "error", None)
    code = getattr(odata, "code", None)
    if isinstance(code, str) and code:
        return code
    text = str(getattr(exc, "message", None) or exc)
    match = _CODE_PREFIX.match(text)
    if match:
        return match.group(1)
    for known in KNOWN_CODES:
        if known in text:
            return known
    return None


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    return isinstance(exc, HttpResponseError) and exc.status_code in RETRYABLE_STATUS


def translate(exc: AzureError, what: str) -> PlatformError:
    """The app's error for an azure-core error raised while doing ``what``."""
    message = f"{what}: {short(getattr(exc, 'message', None) or str(exc))}"
    code = error_code(exc)
    if isinstance(exc, ResourceNotFoundError):
        return NotFoundError(message, code or "ResourceNotFound")
    if is_retryable(exc):
        return TransientPlatformError(message, code)
    if isinstance(exc, ClientAuthenticationError):
        return PlatformError(
            f"{what}: Azure authentication failed ({short(str(exc))}); check the Function's managed identity "
            "and its roles (see docs/running-on-azure.md)",
            code or "AuthenticationFailed",
        )
    return PlatformError(message, code)


@contextmanager
def azure_call(what: str) -> Iterator[None]:
    """Run SDK calls, raising the app's errors instead of azure-core's."""
    try:
        yield
    except AzureError as exc:
        raise translate(exc, what) from None
