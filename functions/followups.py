"""Queue trigger: a follow-up, the check a run scheduled for when its answer is due (docs/follow-ups.md)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions import app_setting
from shared import runtime, telemetry
from shared.followups import FollowUp, FollowUpError

log = logging.getLogger(__name__)
bp = func.Blueprint()

FOLLOW_UP_FUNCTION = "followup"


# The connection is the app's storage, identity-based on Azure (AzureWebJobsStorage__queueServiceUri and
# __credential/__clientId, infra/app/resources.bicep), as for the blob trigger. A message that raises is
# retried and, after host.json's maxDequeueCount, moved to <queue>-poison by the host; the timers still
# finish the run.
@bp.function_name(FOLLOW_UP_FUNCTION)
@bp.queue_trigger(
    arg_name="message", queue_name=app_setting("AUTOPILOT_FOLLOW_UP_QUEUE"), connection="AzureWebJobsStorage"
)
def followup(message: func.QueueMessage) -> None:
    with telemetry.invocation(FOLLOW_UP_FUNCTION):
        _followup(message)


def _followup(message: func.QueueMessage) -> None:
    try:
        check = FollowUp.from_json(message.get_body().decode("utf-8"))
    except (FollowUpError, UnicodeDecodeError) as exc:
        log.warning("queue message %s dropped: %s", message.id, exc)  # retrying cannot fix it
        return
    telemetry.bind(run_id=check.run_id)
    if not runtime.settings().follow_ups:
        log.info("follow-up of run %s dropped: AUTOPILOT_FOLLOW_UPS is off", check.run_id)
        return
    from shared.services.followup import follow_up  # services load on first use

    outcome = follow_up(
        runtime.run_store(),
        runtime.platform(),
        runtime.follow_ups(),
        check,
        deploy_timeout=runtime.deploy_timeout(),
        received_deadline=runtime.received_deadline(),
        orphan_grace=runtime.orphan_grace(),
    )
    log.info(
        "follow-up %s #%d of run %s: %s",
        check.kind.value,
        check.attempt,
        check.run_id,
        outcome,
        extra={"run_id": check.run_id},
    )
