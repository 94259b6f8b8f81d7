"""Policy for a config path overwritten while its earlier run is still in flight: the newest bytes win.

Runs of one path are ordered by when they were received (``created_at``). Both runs go on (the platform has
no cancel that is safe to retry, and the older run's endpoint keeps the path served meanwhile); when a run of
the path reaches ``deployed``, every other deployed run of that path that is older is superseded: its
endpoint is deleted and the run ends ``deleted`` with a note naming the newer run. An older run that deploys
after a newer one is superseded at once. So once settled, a config path has one endpoint: the newest run's.
Idempotent: a missing endpoint is success and a run already ``deleted`` is left alone.
"""

from __future__ import annotations

import contextlib
import logging

from shared.exceptions import NotFoundError
from shared.ledger.record import RunRecord
from shared.platform.port import MLPlatform
from shared.runs import RunStore
from shared.states import RunState

log = logging.getLogger(__name__)


def supersede_older(store: RunStore, platform: MLPlatform, deployed: RunRecord) -> list[str]:
    """After ``deployed`` reached ``deployed``: retire the older deployed runs of its config path."""
    # Runs of one config path share their id's prefix (the config name): a key range, never a table scan.
    prefix = deployed.run_id.rsplit("-", 1)[0] + "-"
    same_path = [
        r
        for r in store.ledger.with_prefix(prefix)
        if r.state == RunState.DEPLOYED and r.config_blob == deployed.config_blob
    ]
    if all(r.run_id != deployed.run_id for r in same_path):
        same_path.append(deployed)
    newest = max(same_path, key=lambda r: (r.created_at, r.run_id))
    retired: list[str] = []
    for record in same_path:
        if record.run_id == newest.run_id:
            continue
        if record.endpoint_name and record.endpoint_name == newest.endpoint_name:
            continue  # one shared endpoint: the canary rollout retires the older deployment (canary.py)
        if record.endpoint_name:
            with contextlib.suppress(NotFoundError):
                platform.begin_delete_endpoint(record.endpoint_name)

        def note(r: RunRecord, newer: str = newest.run_id) -> None:
            r.notes.append(f"endpoint deleted: superseded by run {newer} of the same config path")

        if store.advance(record.run_id, RunState.DELETED, note) is not None:
            log.info("run %s: superseded by %s; endpoint deleted", record.run_id, newest.run_id)
            retired.append(record.run_id)
    return retired
