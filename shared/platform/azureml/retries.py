"""How long one SDK call may wait on Azure's throttling before it gives up and leaves the work to the next
event or sweep.

azure-core's ``RetryPolicy`` retries 408, 429 and 5xx answers (and connection errors) three times, backing off
exponentially, and sleeps whatever a ``Retry-After`` header asks, unbounded: an Azure Resource Manager 429
asking for an hour would hold a reconcile invocation (a 240 s budget, a Function timeout of minutes) for that
hour. ``BoundedRetryPolicy`` keeps azure-core's retries but never waits longer than ``max_wait_s`` at a time,
nor more than ``total_wait_s`` for one call: an answer that asks for more is returned as it is, the SDK raises
it, ``errors.translate`` makes it a ``TransientPlatformError``, and the trigger (Event Grid, the blob trigger)
or the next reconcile or cleanup sweep tries again. docs/azure-faults.md has what each call does then.
"""

from __future__ import annotations

from typing import Any

from azure.core.pipeline.policies import RetryPolicy

# One wait of at most 30 s, and 60 s in all per call: a sweep (it starts work for 240 s, 8 calls at a time,
# and its leases outlast that by 2 minutes) keeps most of its budget through a throttling episode, and an event
# handler stays far inside the Function timeout (5 minutes at the least).
MAX_WAIT_S = 30.0
TOTAL_WAIT_S = 60.0
WAITED = "autopilot_waited_s"  # the seconds one call has waited so far, kept in azure-core's retry settings


class BoundedRetryPolicy(RetryPolicy):
    """azure-core's retries, with each wait at most ``max_wait_s`` and one call's waits at most ``total_wait_s``."""

    def __init__(self, *, max_wait_s: float = MAX_WAIT_S, total_wait_s: float = TOTAL_WAIT_S, **kwargs: Any) -> None:
        kwargs.setdefault("retry_backoff_max", max_wait_s)
        super().__init__(**kwargs)
        self.max_wait_s = max_wait_s
        self.total_wait_s = total_wait_s

    def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
        settings = super().configure_retries(options)
        settings[WAITED] = 0.0
        return settings

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        if not super().is_retry(settings, response):
            return False
        asked = self.get_retry_after(response)
        if asked is not None and asked > self.max_wait_s:
            return False  # not worth holding the invocation for: the next look tries again
        return bool(settings[WAITED] < self.total_wait_s)

    def sleep(self, settings: dict[str, Any], transport: Any, response: Any = None) -> None:
        asked = self.get_retry_after(response) if response is not None else None
        left = max(0.0, self.total_wait_s - settings.get(WAITED, 0.0))
        wait = min(asked if asked else self.get_backoff_time(settings), self.max_wait_s, left)
        settings[WAITED] = settings.get(WAITED, 0.0) + wait
        if wait > 0:
            transport.sleep(wait)


def sdk_options() -> dict[str, Any]:
    """Keyword arguments every Azure SDK client of the app is built with (``MLClient``, ``MetricsClient``)."""
    return {"retry_policy": BoundedRetryPolicy()}
