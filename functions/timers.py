"""Timers: reconcile unfinished runs; delete idle endpoints; deliver owed notifications."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import azure.functions as func

from functions import app_setting
from shared import runtime, telemetry

if TYPE_CHECKING:
    from shared.services.sweep import SweepBudget

log = logging.getLogger(__name__)
bp = func.Blueprint()


def _budget() -> SweepBudget:
    from shared.services.sweep import SweepBudget

    s = runtime.settings()
    return SweepBudget(seconds=s.sweep_budget_seconds, concurrency=s.sweep_concurrency)


@bp.function_name("reconcile")
@bp.timer_trigger(arg_name="timer", schedule=app_setting("AUTOPILOT_RECONCILE_SCHEDULE"), run_on_startup=False)
def reconcile(timer: func.TimerRequest) -> None:
    with telemetry.invocation("reconcile"):
        _reconcile(timer)


def _reconcile(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("reconcile: timer is past due; running now")
    from shared.services.reconcile import reconcile as reconcile_service  # loads on first use

    report = reconcile_service(
        runtime.run_store(),
        runtime.platform(),
        deploy_timeout=runtime.deploy_timeout(),
        budget=_budget(),
        received_deadline=runtime.received_deadline(),
        orphan_grace=runtime.orphan_grace(),
    )
    for orphan in report.orphans:
        log.warning(
            "reconcile: orphan %s %s (run %s, no ledger row): %s",
            orphan.kind,
            orphan.name,
            orphan.run_id,
            orphan.action,
        )


@bp.function_name("cleanup")
@bp.timer_trigger(arg_name="timer", schedule=app_setting("AUTOPILOT_CLEANUP_SCHEDULE"), run_on_startup=False)
def cleanup(timer: func.TimerRequest) -> None:
    with telemetry.invocation("cleanup"):
        _cleanup(timer)


def _cleanup(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("cleanup: timer is past due; running now")
    from shared.services.cleanup import cleanup as cleanup_service

    # Each decision is logged by the service, in its run's scope.
    cleanup_service(runtime.run_store(), runtime.platform(), budget=_budget())


@bp.function_name("deliver_notifications")
@bp.timer_trigger(arg_name="timer", schedule=app_setting("AUTOPILOT_NOTIFY_SCHEDULE"), run_on_startup=False)
def deliver_notifications(timer: func.TimerRequest) -> None:
    with telemetry.invocation("deliver_notifications"):
        _deliver_notifications(timer)


def _deliver_notifications(timer: func.TimerRequest) -> None:
    # Its own timer: a receiver that hangs holds up no state change and no sweep (shared/services/delivery.py).
    if timer.past_due:
        log.info("deliver_notifications: timer is past due; running now")
    from shared.services.delivery import deliver_owed
    from shared.services.sweep import Deadline

    budget = _budget()
    report = deliver_owed(
        runtime.run_store(),
        runtime.senders(),
        deadline=Deadline(budget.seconds),
        concurrency=budget.concurrency,
    )
    if report.sent or report.failed:
        log.info("deliver_notifications: %d tries, %d runs left for next time", len(report.sent), len(report.failed))
