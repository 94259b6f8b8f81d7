"""Policy for a config path overwritten while its earlier run is still in flight: the newest bytes win.

Runs of one path are ordered by when they were received (``created_at``). Both runs go on (the platform has
no cancel that is safe to retry, and the older run's endpoint keeps the path served meanwhile); when a run of
the path reaches ``deployed``, every other deployed run of that path that is older is superseded and ends
``deleted`` with a note naming the newer run. An older run that deploys after a newer one is superseded at once.
So once settled, a config path has one endpoint: the newest run's.

What goes with a superseded run is what it deployed, never what other runs serve from. An endpoint is shared
when another run that still serves (deployed, or rolling out as a canary) has a deployment on it: the endpoint
the run joined as a canary, or the run's own endpoint that later runs joined (``canary.py``). There only the
run's deployment goes: the run is first marked replaced (so should this step die half-way, the cleanup's retire
step finishes it), its share of the traffic moves to the other run's deployment (the one it replaced, if it
still serves), then its deployment is deleted. While another canary is rolling out on that endpoint the run's
deployment is its baseline and stays; the retire step deletes it once it carries no traffic. An endpoint that
serves no other run is deleted as a whole.
Idempotent: a missing endpoint or deployment is success and a run already ``deleted`` is left alone.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime

from shared.exceptions import NotFoundError
from shared.ledger.parts import Rollout
from shared.ledger.record import RunRecord
from shared.platform.port import DeploymentSummary, MLPlatform
from shared.runs import RunStore
from shared.services.canary import ROLLING_OUT
from shared.states import RunState

log = logging.getLogger(__name__)

SERVING = ROLLING_OUT | {RunState.DEPLOYED}  # runs whose deployment on an endpoint is still wanted


@dataclass(frozen=True)
class Neighbour:
    """Another run's deployment on the endpoint of the run being retired."""

    deployment: DeploymentSummary
    run: RunRecord


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
        if retire_superseded(store, platform, record, newest.run_id):
            retired.append(record.run_id)
    return retired


def neighbours(store: RunStore, deployments: list[DeploymentSummary], record: RunRecord) -> list[Neighbour]:
    """The other runs still serving from the endpoint, with their deployments on it."""
    found = []
    for deployment in deployments:
        if deployment.name == record.deployment_name or not deployment.run_id or deployment.run_id == record.run_id:
            continue
        run = store.get(deployment.run_id)
        if run is not None and run.state in SERVING:
            found.append(Neighbour(deployment, run))
    return found


def retire_superseded(store: RunStore, platform: MLPlatform, record: RunRecord, newer: str) -> bool:
    """Retire one superseded run; True when it ended ``deleted`` now."""
    endpoint = record.endpoint_name
    try:
        deployments = platform.list_deployments(endpoint) if endpoint else []
    except NotFoundError:
        deployments = []  # the endpoint is gone already
    others = neighbours(store, deployments, record)
    if not endpoint or not others:
        if endpoint:
            with contextlib.suppress(NotFoundError):
                platform.begin_delete_endpoint(endpoint)

        def note(r: RunRecord) -> None:
            r.notes.append(f"endpoint deleted: superseded by run {newer} of the same config path")

        done = store.advance(record.run_id, RunState.DELETED, note) is not None
        if done:
            log.info("run %s: superseded by %s; endpoint deleted", record.run_id, newer)
        return done
    assert endpoint is not None
    return _leave_shared_endpoint(store, platform, record, newer, endpoint, deployments, others)


def _leave_shared_endpoint(
    store: RunStore,
    platform: MLPlatform,
    record: RunRecord,
    newer: str,
    endpoint: str,
    deployments: list[DeploymentSummary],
    others: list[Neighbour],
) -> bool:
    now = store.clock()
    _mark_superseded(store, record.run_id, newer, now)  # first: the retire step finishes what a crash leaves
    mine = next((d for d in deployments if d.name == record.deployment_name), None)
    if any(o.run.state in ROLLING_OUT for o in others):
        log.info(
            "run %s: superseded by %s; its deployment stays while a canary rolls out on %s",
            record.run_id,
            newer,
            endpoint,
        )
        return False
    if mine is not None and mine.traffic > 0:
        taker = _taker(record, others)
        traffic = {d.name: d.traffic for d in deployments if d.traffic}
        traffic[taker.deployment.name] = traffic.get(taker.deployment.name, 0) + traffic.pop(mine.name)
        platform.set_traffic(endpoint, {**traffic, mine.name: 0})
        _serving_again(store, taker.run, record.run_id, newer)
    if mine is not None:
        platform.begin_delete_deployment(endpoint, mine.name)
    left = sorted(o.run.run_id for o in others)

    def note(r: RunRecord) -> None:
        r.rollout = replace(r.rollout or Rollout(), deployment_deleted_at=now)
        r.notes.append(
            f"deployment {r.deployment_name} removed from endpoint {endpoint}, which keeps serving run(s) "
            f"{', '.join(left)}: superseded by run {newer} of the same config path"
        )

    done = store.advance(record.run_id, RunState.DELETED, note) is not None
    if done:
        log.info(
            "run %s: superseded by %s; its deployment on shared endpoint %s deleted", record.run_id, newer, endpoint
        )
    return done


def _mark_superseded(store: RunStore, run_id: str, newer: str, now: datetime) -> None:
    def fill(r: RunRecord) -> None:
        rollout = r.rollout or Rollout()
        if rollout.replaced_by == newer:
            return
        r.rollout = replace(rollout, replaced_by=newer, retire_after=now)
        r.notes.append(f"superseded by run {newer}: its deployment is deleted once it carries no traffic")

    store.update(run_id, fill)


def _taker(record: RunRecord, others: list[Neighbour]) -> Neighbour:
    """Who gets the traffic: the deployment this run replaced if it still serves, else the one deployed last."""
    previous = record.canary.previous_deployment if record.canary is not None else None
    for other in others:
        if other.deployment.name == previous:
            return other
    return max(others, key=lambda o: (o.deployment.traffic, o.run.timeline.get(RunState.DEPLOYED.value, "")))


def _serving_again(store: RunStore, taker: RunRecord, retired: str, newer: str) -> None:
    """The run that takes the traffic back is no longer replaced by the run that leaves."""

    def restored(r: RunRecord) -> None:
        if r.rollout is not None and r.rollout.replaced_by == retired:
            r.rollout = replace(r.rollout, replaced_by=None, retire_after=None)
        r.notes.append(f"serving again: run {retired} left the endpoint (superseded by run {newer})")

    store.update(taker.run_id, restored)
