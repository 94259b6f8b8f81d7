"""``autopilot approve RUN`` / ``reject RUN --reason TEXT``: the decision on a model that waits for approval
(``deployment.approval: manual``); it goes on the run in the ledger and the deploy step acts on it (the next
reconcile sweep, or at once if the model is registered later). ``autopilot cancel RUN``: stop a run before it
is deployed; the job is canceled and anything deployed for it deleted. ``autopilot rollback ENDPOINT``: traffic
back on the deployment the latest canary on a shared endpoint replaced, while it still exists."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from shared import runtime
from shared.exceptions import PlatformError
from shared.services.approval import ApprovalError, Decision, decide
from shared.services.cancel import CancelError, cancel_run
from shared.services.rollback import RollbackError, rollback_endpoint


def _who(args: argparse.Namespace) -> str:
    if args.by:
        return str(args.by)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _decide(args: argparse.Namespace, decision: Decision) -> int:
    try:
        record = decide(runtime.run_store(), args.run, decision, by=_who(args), reason=args.reason)
    except ApprovalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    approval = record.approval
    assert approval is not None  # decide returns the run with its decision
    print(f"run {record.run_id}: {approval.decision} by {approval.by} at {approval.at.isoformat()}")
    if decision == "approved":
        print("it deploys at the next reconcile sweep (AUTOPILOT_RECONCILE_SCHEDULE) once registered")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approved")


def cmd_reject(args: argparse.Namespace) -> int:
    return _decide(args, "rejected")


def cmd_cancel(args: argparse.Namespace) -> int:
    try:
        record = cancel_run(runtime.run_store(), runtime.platform(), args.run, by=_who(args))
    except CancelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except PlatformError as exc:
        # The run is canceled in the ledger; telling the platform failed and is safe to try again.
        print(
            f"error: run {args.run} is canceled, but the platform said: {exc}; run the command again", file=sys.stderr
        )
        return 1
    print(f"run {record.run_id}: canceled")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    try:
        record = rollback_endpoint(runtime.run_store(), runtime.platform(), args.endpoint, by=_who(args))
    except RollbackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except PlatformError as exc:
        print(f"error: the platform said: {exc}; run the command again", file=sys.stderr)
        return 1
    canary = record.canary
    done = canary.rolled_back if canary is not None else None
    assert canary is not None and done is not None  # rollback_endpoint returns the canary it rolled back
    print(
        f"endpoint {args.endpoint}: traffic on {canary.previous_deployment} (run {canary.previous_run}); "
        f"run {record.run_id} rolled back by {done.by} at {done.at.isoformat()} ({record.state.value})"
    )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("cancel", help="cancel a run before it is deployed (job canceled, endpoint deleted)")
    p.add_argument("run", help="the run id")
    p.add_argument("--by", help="who cancels (default: your user name)")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("rollback", help="put an endpoint's traffic back on the deployment its latest canary replaced")
    p.add_argument("endpoint", help="the endpoint name (deployment.endpoint_name)")
    p.add_argument("--by", help="who rolls back (default: your user name)")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("approve", help="approve a model that waits for approval; it is then deployed")
    p.add_argument("run", help="the run id")
    p.add_argument("--by", help="who decides (default: your user name)")
    p.add_argument("--reason", help="why (kept on the run)")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("reject", help="reject a model that waits for approval; the run ends deploy_failed")
    p.add_argument("run", help="the run id")
    p.add_argument("--reason", required=True, help="why (kept on the run and shown in its status)")
    p.add_argument("--by", help="who decides (default: your user name)")
    p.set_defaults(func=cmd_reject)
