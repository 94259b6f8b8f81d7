"""``autopilot cancel RUN``: stop a run someone no longer wants, at any point before it is deployed.

The ledger decides first: the run moves to ``canceled`` under the usual ETag discipline, so a cancel that
races the job's completion, the registration or the deploy ends in exactly one terminal state. Only then is
the platform told: the job is canceled (a finished one is left alone) and whatever was deployed for the run
is deleted. A deploy handler that started its endpoint just before the cancel landed deletes it itself when
its own ledger write is refused (see ``lifecycle.deploy``), so nothing half-deployed stays behind.

A cancel can land while the submit is in flight (the run still ``received``, no job name recorded yet). The job
is named after the run, so the cancel looks for it by the run id (``cancel_job_of``); a submit whose ledger
write is refused because the run was canceled meanwhile cancels the job it has just created
(``submit.submit_config``); and should both miss (the submit died between the two), the orphan sweep cancels an
app-tagged job whose run is canceled (``orphans.py``). However the race falls, the job is stopped.
"""

from __future__ import annotations

import logging

from shared.exceptions import AutopilotError, FieldIssue, NotFoundError
from shared.ledger.record import RunRecord
from shared.naming import TAG_RUN_ID
from shared.platform.port import MLPlatform
from shared.runs import RunStore
from shared.services.canary import abort_on_platform
from shared.states import RunState, can_move

log = logging.getLogger(__name__)


class CancelError(AutopilotError):
    """The run cannot be canceled; the message says why."""


def cancel_run(store: RunStore, platform: MLPlatform, run_id: str, *, by: str) -> RunRecord:
    record = store.get(run_id)
    if record is None:
        raise CancelError(f"no run {run_id!r}")
    if record.state != RunState.CANCELED:
        if not can_move(record.state, RunState.CANCELED):
            hint = " (delete its endpoint with autopilot cleanup)" if record.state == RunState.DEPLOYED else ""
            raise CancelError(f"run {run_id} is {record.state.value}: it can no longer be canceled{hint}")

        def note(r: RunRecord) -> None:
            r.errors = [FieldIssue("run", f"canceled by {by}")]
            r.last_error_code = "Canceled"

        if store.advance(run_id, RunState.CANCELED, note) is None:
            # Another writer moved the run meanwhile: decide again on what it is now.
            return cancel_run(store, platform, run_id, by=by)
    canceled = store.get(run_id)
    assert canceled is not None
    remove_what_the_run_started(platform, canceled)
    return canceled


def remove_what_the_run_started(platform: MLPlatform, record: RunRecord) -> None:
    """Cancel the job and delete the run's endpoint; both are no-ops when there is nothing to stop."""
    cancel_job_of(platform, record)
    remove_deployed(platform, record)


def cancel_job_of(platform: MLPlatform, record: RunRecord) -> bool:
    """Cancel the run's job: the one recorded, or, when the submit had not recorded it yet, the job named after
    the run (``JobRequest.name`` is the run id) if its tags say it is this run's (a job of that name made by
    anyone else is left alone). True when a cancel was sent."""
    if record.job_name:
        platform.cancel_job(record.job_name)
        return True
    try:
        job = platform.get_job(record.run_id)
    except NotFoundError:
        return False  # not created (yet): the submit that creates it cancels it (submit.py)
    if job.tags.get(TAG_RUN_ID) != record.run_id or job.status.is_terminal:
        return False
    platform.cancel_job(job.name)
    log.info("run %s: canceled while its submit was in flight; job %s canceled", record.run_id, job.name)
    return True


def remove_deployed(platform: MLPlatform, record: RunRecord) -> None:
    """What the run deployed: its own endpoint, or, for a canary on another run's endpoint, its deployment
    (traffic back on the previous one first)."""
    if record.canary is not None:
        if record.deployment_name:
            abort_on_platform(platform, record)
        return
    delete_endpoint_of(platform, record)


def delete_endpoint_of(platform: MLPlatform, record: RunRecord) -> bool:
    """Delete the run's endpoint if it exists and is this run's (an endpoint named in a config may be shared
    by runs: another run's endpoint is never touched). True when a deletion was started."""
    if not record.endpoint_name:
        return False
    for endpoint in platform.list_endpoints():
        if endpoint.name == record.endpoint_name and endpoint.tags.get(TAG_RUN_ID) == record.run_id:
            platform.begin_delete_endpoint(record.endpoint_name)
            log.info("run %s: canceled; endpoint %s is being deleted", record.run_id, record.endpoint_name)
            return True
    return False
