"""Runs whose endpoint the platform no longer has: a deployed run whose endpoint was deleted outside the app
(by hand, by a workspace policy) ends ``deleted`` with the reason on the run, instead of reading ``deployed``
on nothing. A canary's endpoint is looked at by the canary's own steps (``canary.observe``, reconcile's
``finish_deployment``), which end it ``deploy_failed`` the same way.

Only positive evidence counts. Reconcile's runs step lists the endpoints once per invocation (``Listing``); a
deployed run whose endpoint is not in a listing that succeeded is then read on its own (``get_deployment``), and
only the platform's answer that neither the endpoint nor its deployment exists ends it. A listing or a read that
fails, or an endpoint still being deleted, changes nothing: the next invocation looks again. A deployed run
costs nothing while its endpoint is listed, so this adds one listing call per invocation.
"""

from __future__ import annotations

import logging
import threading

from shared.exceptions import FieldIssue
from shared.ledger.record import RunRecord
from shared.platform.port import DeploymentState, MLPlatform
from shared.runs import RunStore
from shared.services.canary import ENDPOINT_GONE, gone_message
from shared.states import RunState

log = logging.getLogger(__name__)


class Listing:
    """The platform's endpoints, listed on first use and kept for one invocation (its threads share it)."""

    def __init__(self, platform: MLPlatform) -> None:
        self._platform = platform
        self._lock = threading.Lock()
        self._names: frozenset[str] | None = None
        self._failed = False

    def names(self) -> frozenset[str] | None:
        """The listed endpoint names; None when the listing failed (no evidence either way)."""
        with self._lock:
            if self._names is None and not self._failed:
                try:
                    self._names = frozenset(e.name for e in self._platform.list_endpoints())
                except Exception as exc:
                    log.warning("endpoints not listed (deployed runs looked at next time): %s", exc)
                    self._failed = True
            return self._names

    def lacks(self, record: RunRecord) -> bool:
        """Whether a listing that succeeded is without the deployed run's endpoint."""
        if record.state != RunState.DEPLOYED or not record.endpoint_name:
            return False
        names = self.names()
        return names is not None and record.endpoint_name not in names


def end_if_gone(store: RunStore, platform: MLPlatform, record: RunRecord) -> RunRecord | None:
    """A deployed run whose endpoint was not listed: ``deleted`` with the reason if the platform confirms it
    has neither the endpoint nor its deployment; None (nothing written) otherwise."""
    assert record.endpoint_name and record.deployment_name
    info = platform.get_deployment(record.endpoint_name, record.deployment_name)  # an error: no evidence
    if info.state != DeploymentState.MISSING:
        return None
    message = gone_message(record.endpoint_name)

    def fill(r: RunRecord) -> None:
        r.errors = [FieldIssue("endpoint", message)]
        r.last_error_code = ENDPOINT_GONE
        r.notes.append(f"{message}; the run's deployment {r.deployment_name} is gone with it")

    log.warning("run %s: %s", record.run_id, message)
    return store.advance(record, RunState.DELETED, fill)
