"""``autopilot invoke | endpoints | cleanup``: the endpoint commands.

They talk to the platform the settings pick (local by default, Azure ML with a workspace named); ``demo`` is
in ``autopilot.demo``, ``prepare-dataset`` in ``autopilot.dataset``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from autopilot.settings import storage_hint
from shared.exceptions import AutopilotError
from shared.scoring import DEFAULT_PARAMETERS, ScoreRequest, ScoringParameters, answer_text, scoring_payload

USAGE = 2  # argparse's exit code: what the command line asked for cannot be done as given


def _fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def _usage(message: str) -> int:
    return _fail(message, USAGE)


def message_payload(text: str, parameters: ScoringParameters | None = None) -> dict[str, Any]:
    """The seed's scoring payload for one user message."""
    return scoring_payload([[{"role": "user", "content": text}]], parameters or DEFAULT_PARAMETERS)


def _invalid(what: str, exc: ValidationError) -> str:
    reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()[:5])
    return f"{what}: {reasons}"


def cmd_invoke(args: argparse.Namespace) -> int:
    from shared import runtime

    if args.request_file:
        try:
            payload = json.loads(Path(args.request_file).read_text(encoding="utf-8"))
        except OSError as exc:
            return _usage(f"--request-file: cannot read {args.request_file}: {exc.strerror}")
        except ValueError as exc:
            return _usage(f"--request-file: not valid JSON ({exc})")
        if not isinstance(payload, dict):
            return _usage("--request-file: the payload must be a JSON object")
        try:  # the scoring contract the endpoints serve; a bad file is named here, not by a 400
            ScoreRequest.model_validate(payload)
        except ValidationError as exc:
            return _usage(_invalid("--request-file", exc))
    else:
        params: dict[str, Any] = DEFAULT_PARAMETERS.model_dump(exclude_none=True)
        if args.max_new_tokens is not None:
            params["max_new_tokens"] = args.max_new_tokens
        if args.temperature is not None:
            params["temperature"] = args.temperature
            params["do_sample"] = args.temperature > 0
        try:
            parameters = ScoringParameters.model_validate(params)
        except ValidationError as exc:
            return _usage(_invalid("invoke", exc))
        payload = message_payload(args.message, parameters)
    try:
        answer = runtime.platform().invoke(args.endpoint, args.deployment, payload)
    except AutopilotError as exc:
        return _fail(f"invoke failed: {exc}")
    except Exception as exc:  # a user gets one line, never a traceback
        return _fail(f"invoke failed ({type(exc).__name__}: {exc})")
    print(json.dumps(answer, indent=2) if args.raw else answer_text(answer))
    return 0


def _local_keys(platform: Any, name: str) -> tuple[str, str] | None:
    keys = getattr(platform, "endpoint_keys", None)
    if keys is None:
        return None
    try:
        primary, secondary = keys(name)
    except (AutopilotError, ValueError, OSError):
        return None
    return primary, secondary


def _endpoint_rows(platform: Any, endpoints: list[Any]) -> list[dict[str, Any]]:
    """Each endpoint with its activity since it was created (None where the platform could not say)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rows = []
    for e in endpoints:
        try:
            activity = platform.endpoint_activity(e.name, since=e.created_at or epoch)
            requests: int | None = activity.request_count
            last = activity.last_request_at.isoformat(timespec="seconds") if activity.last_request_at else "never"
        except AutopilotError:
            requests, last = None, None
        rows.append(
            {
                "name": e.name,
                "state": e.state,
                "healthy": e.healthy,
                "requests": requests,
                "last_request": last,
                "scoring_uri": e.scoring_uri,
                "created_at": e.created_at.isoformat() if e.created_at else None,
            }
        )
    return rows


def cmd_endpoints(args: argparse.Namespace) -> int:
    from shared import runtime

    platform = runtime.platform()
    try:
        endpoints = platform.list_endpoints()
    except AutopilotError as exc:
        return _fail(f"cannot list endpoints: {exc}")
    rows = _endpoint_rows(platform, endpoints)
    if args.json:
        print(json.dumps(rows, indent=2))  # keys stay off JSON: it is meant to be kept and passed around
        return 0
    if not endpoints:
        print("no endpoints managed by the app")
        return 0
    print(f"{'NAME':<32} {'STATE':<10} {'HEALTHY':<8} {'REQUESTS':>8}  {'LAST REQUEST':<25} URL")
    shown_keys: list[tuple[str, tuple[str, str]]] = []
    for row in rows:
        healthy = {True: "yes", False: "no", None: "-"}[row["healthy"]]
        requests = "?" if row["requests"] is None else str(row["requests"])
        print(
            f"{row['name']:<32} {row['state'] or '-':<10} {healthy:<8} {requests:>8}  {row['last_request'] or '?':<25} "
            f"{row['scoring_uri'] or ''}"
        )
        if args.show_keys:
            keys = _local_keys(platform, row["name"])
            if keys is not None:
                shown_keys.append((row["name"], keys))
    if args.show_keys:
        if not shown_keys:
            print(f"\nkeys: the {platform.name} platform does not hand out keys here", file=sys.stderr)
            return 0
        print("\nWARNING: endpoint keys are secrets. Do not paste them into logs, tickets or chats.", file=sys.stderr)
        for name, (primary, secondary) in shown_keys:
            print(f"{name}  primary: {primary}")
            print(f"{name}  secondary: {secondary}")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from shared import runtime
    from shared.services.cleanup import cleanup

    try:
        decisions = cleanup(runtime.run_store(), runtime.platform(), dry_run=args.dry_run)
    except AutopilotError as exc:
        return _fail(f"cleanup failed: {exc}")
    except Exception as exc:  # storage not running, most often
        return _fail(f"cleanup failed ({type(exc).__name__}); {storage_hint(runtime.settings())}")
    if args.json:
        document = [{**dataclasses.asdict(d), "run_ids": list(d.run_ids), "dry_run": args.dry_run} for d in decisions]
        print(json.dumps(document, indent=2))
        return 0
    if not decisions:
        print("no endpoints managed by the app")
    verb = "would delete" if args.dry_run else "deleted"
    for d in decisions:
        action = verb if d.action == "delete" else d.action
        print(f"{d.endpoint:<32} {action:<13} {d.reason}" + (f"  (run {d.run_id})" if d.run_id else ""))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("invoke", help="send a scoring request to an endpoint and print the answer")
    p.add_argument("endpoint")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--request-file", help="a JSON scoring payload (the seed's sample_score.json format)")
    source.add_argument("--message", help="one user message; sent in the seed's payload format")
    p.add_argument("--deployment", help="a deployment of the endpoint (default: where traffic goes)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        help=f"with --message: tokens to generate (default {DEFAULT_PARAMETERS.max_new_tokens})",
    )
    p.add_argument(
        "--temperature",
        type=float,
        help=f"with --message: sampling temperature (default {DEFAULT_PARAMETERS.temperature})",
    )
    p.add_argument("--raw", action="store_true", help="print the JSON answer as returned")
    p.set_defaults(func=cmd_invoke)

    p = sub.add_parser("endpoints", help="endpoints managed by the app, with activity")
    keys_or_json = p.add_mutually_exclusive_group()
    keys_or_json.add_argument("--show-keys", action="store_true", help="also print the keys (secrets; local platform)")
    keys_or_json.add_argument("--json", action="store_true", help="machine-readable output (never the keys)")
    p.set_defaults(func=cmd_endpoints)

    p = sub.add_parser("cleanup", help="delete idle or dead endpoints now, as the cleanup timer does")
    p.add_argument("--dry-run", action="store_true", help="print the decisions, delete nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output: one object per endpoint")
    p.set_defaults(func=cmd_cleanup)
