"""Azure SDK errors translated to the app's: retryable, missing, or a platform failure with its code.

Messages are cut short and never include request URLs with credentials: azure-core's messages carry the
service's error text (code and message), which holds no keys. A throttled call says how long Azure asked to
wait (``Retry-After``): the SDK waits only so long (``retries.py``), the app's next look does the rest.
What each adapter call does with each kind of error is in docs/azure-faults.md.
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
from shared.identity import sign_in_advice

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
KNOWN_CODES = (
    "OutOfQuota",
    "OutOfCapacity",
    "ImageBuildFailure",
    "BadArgument",
    "ResourceNotReady",
    "ResourceNotFound",
    "OperationCanceled",
)
# What to do about a failed deployment, by its error code (how-to-troubleshoot-online-endpoints.md).
DEPLOYMENT_REMEDIES = {
    "OutOfQuota": "request more quota for the VM family in this region, or pick a SKU you have quota for "
    "(deployment.instance_type)",
    "OutOfCapacity": "Azure has no capacity for this SKU in the region right now: retry later, or choose another "
    "SKU from the model's inference allow list (deployment.instance_type) or another region",
    "ImageBuildFailure": "the environment image failed to build; its build log is in Azure ML studio",
    "ResourceNotReady": "the container did not become ready: raise deployment.liveness_initial_delay_s, or read "
    "the deployment's logs",
    "BadArgument": "the service refused a setting of the deployment; the message names it",
}
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


def with_remedy(code: str | None, message: str | None) -> str | None:
    """The failure message followed by the table's remedy for its code, when there is one."""
    remedy = DEPLOYMENT_REMEDIES.get(code or "")
    if remedy is None:
        return message
    return f"{message}; remedy: {remedy}" if message else f"remedy: {remedy}"


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    return isinstance(exc, HttpResponseError) and exc.status_code in RETRYABLE_STATUS


def retry_after(exc: BaseException) -> float | None:
    """The seconds Azure asked the caller to wait (``Retry-After``) before trying again, if it said."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP date: the message says nothing of it


def translate(exc: AzureError, what: str) -> PlatformError:
    """The app's error for an azure-core error raised while doing ``what``."""
    message = f"{what}: {short(getattr(exc, 'message', None) or str(exc))}"
    code = error_code(exc)
    if isinstance(exc, ResourceNotFoundError):
        return NotFoundError(message, code or "ResourceNotFound")
    if is_retryable(exc):
        wait = retry_after(exc)
        asked = f" (Azure asked to retry after {wait:g} s; the next look tries again)" if wait else ""
        return TransientPlatformError(message + asked, code)
    if isinstance(exc, ClientAuthenticationError):
        return PlatformError(
            f"{what}: Azure authentication failed ({short(str(exc))}); {sign_in_advice(str(exc))}",
            code or "AuthenticationFailed",
        )
    return PlatformError(message, code)


def unclassified_answer(exc: AzureError, what: str) -> TransientPlatformError:
    """An error answer the SDK could not classify: azure-ai-ml reads a scoring answer that is an error without a
    JSON body (a gateway's 502 or 503 page, say) as a bare ``MlException`` and drops its status. It may pass, so
    it is retryable, never proof that a deployment is broken (the smoke test retries it until its deadline)."""
    return TransientPlatformError(f"{what}: an error answer without a JSON body ({short(str(exc))})", "Unclassified")


@contextmanager
def azure_call(what: str) -> Iterator[None]:
    """Run SDK calls, raising the app's errors instead of azure-core's."""
    try:
        yield
    except AzureError as exc:
        raise translate(exc, what) from None
