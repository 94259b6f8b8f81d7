"""``autopilot validate | submit | status``: the config and run commands."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autopilot.cost_lines import endpoint_cost
from autopilot.settings import NO_SETTINGS, storage_hint
from autopilot.sparkline import curve_lines
from shared.config.loader import MAX_CONFIG_BYTES, load_config
from shared.costs import PriceTable, PriceTableError
from shared.exceptions import ConfigError, FieldIssue
from shared.ledger.record import RunRecord
from shared.naming import config_name
from shared.states import TERMINAL, RunState
from shared.status import awaiting

FOLLOW_INTERVAL_S = 2.0
STATUS_PAGE = 20
# A run that reaches one of these has nothing more to show unless cleanup comes later.
FOLLOW_DONE = TERMINAL | {RunState.DEPLOYED}


def _read_limited(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(MAX_CONFIG_BYTES + 1)


def read_config_file(path: Path) -> tuple[bytes | None, list[FieldIssue]]:
    """The file's bytes and its problems; a missing or unreadable file is a problem, not a traceback."""
    try:
        data = _read_limited(path)
    except FileNotFoundError:
        return None, [FieldIssue("", f"no such file: {path}")]
    except IsADirectoryError:
        return None, [FieldIssue("", f"{path} is a directory")]
    except OSError as exc:
        return None, [FieldIssue("", f"cannot read {path}: {exc.strerror}")]
    try:
        load_config(data)
    except ConfigError as exc:
        return data, exc.issues
    return data, []


def cmd_validate(args: argparse.Namespace) -> int:
    path = Path(args.file)
    _, issues = read_config_file(path)
    if issues:
        for issue in issues:
            print(f"{issue.path or '(file)'}: {issue.message}")
        return 1
    print(f"{path}: valid")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from shared import runtime
    from shared.naming import check_blob_name, run_id
    from shared.storage import upload_config

    path = Path(args.file)
    data, issues = read_config_file(path)
    if data is None or (issues and not args.force):
        for issue in issues:
            print(f"{issue.path or '(file)'}: {issue.message}", file=sys.stderr)
        print("not submitted (fix the config, or --force to let the app reject it)", file=sys.stderr)
        return 1
    blob_name = args.name or path.name
    try:
        check_blob_name(blob_name)
    except Exception as exc:
        print(f"--name: {exc}", file=sys.stderr)
        return 1
    settings = runtime.settings()
    try:
        upload_config(settings.storage(), settings.config_container, blob_name, data)
    except Exception as exc:
        print(
            f"cannot upload to storage ({type(exc).__name__}); {storage_hint(settings)}",
            file=sys.stderr,
        )
        return 1
    run = run_id(settings.config_container, blob_name, data)
    print(f"uploaded {settings.config_container}/{blob_name}")
    print(f"run id: {run}   (follow it: autopilot status {run} --follow)")
    return 0


def _find(store: Any, key: str) -> RunRecord | None:
    """A run by id, else the newest of a config (by name or blob path), else the newest whose id starts so.

    Point reads and key ranges of the ledger: never a scan of every run."""
    exact = store.get(key)
    if exact is not None:
        return exact
    name = config_name(key)
    by_config = [r for r in store.ledger.with_prefix(f"{name}-") if r.config_name == name or r.config_blob == key]
    if by_config:
        return max(by_config, key=lambda r: r.created_at)
    prefixed = store.ledger.with_prefix(key)
    return max(prefixed, key=lambda r: r.created_at) if prefixed else None


def _page(store: Any, args: argparse.Namespace) -> tuple[list[RunRecord], bool]:
    """The runs to list, newest first, and whether there are more than shown."""
    states = _states(args.state)
    if args.all or states:
        # ``--all`` reads the whole ledger; ``--state`` is one filtered query. Both are for a person, not a timer.
        records = sorted(store.list(states or None), key=lambda r: r.created_at, reverse=True)
        if args.all:
            return records, False
        start = (args.page - 1) * args.limit
        return records[start : start + args.limit], len(records) > start + args.limit
    ids = store.ledger.recent(args.limit + 1, skip=(args.page - 1) * args.limit)
    records = [r for r in (store.get(i) for i in ids[: args.limit]) if r is not None]
    return records, len(ids) > args.limit


def _states(values: list[str] | None) -> list[RunState]:
    wanted = [v.strip() for value in values or [] for v in value.split(",") if v.strip()]
    known = {s.value for s in RunState}
    bad = [v for v in wanted if v not in known]
    if bad:
        raise ValueError(f"--state: {', '.join(bad)} is not a run state (one of: {', '.join(sorted(known))})")
    return [RunState(v) for v in wanted]


def _summary_row(r: RunRecord) -> str:
    endpoint = r.endpoint_name if r.state in (RunState.DEPLOYING, RunState.CANARY, RunState.DEPLOYED) else ""
    model = f"{r.model_name}:{r.model_version}" if r.model_version else ""
    return f"{r.run_id:<40} {r.state.value:<14} {r.updated_at:%Y-%m-%d %H:%M:%S} {model:<40} {endpoint}"


def _detail_lines(r: RunRecord, progress: str | None) -> list[str]:
    lines = [f"run {r.run_id}  ({r.config_blob})", f"  state: {r.state.value}"]
    for state, at in r.timeline.items():
        lines.append(f"    {state:<14} {at}")
    if r.job_name:
        lines.append(f"  job: {r.job_name} ({r.job_status or '-'})" + (f"  {progress}" if progress else ""))
    if r.metrics:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.metrics.items()) if isinstance(v, int | float))
        lines.append(f"  metrics: {shown}")
    lines.extend(curve_lines(r.history))
    if r.model_version:
        lines.append(f"  model: {r.model_name}:{r.model_version}")
    if awaiting(r) == "approval":
        lines.append(f"  awaiting approval: autopilot approve {r.run_id}  |  autopilot reject {r.run_id} --reason ...")
    if r.approval:
        a = r.approval
        why = f" ({a.reason})" if a.reason else ""
        lines.append(f"  approval: {a.decision} by {a.by} at {a.at.isoformat()}{why}")
    if r.endpoint_name:
        lines.append(f"  endpoint: {r.endpoint_name} / {r.deployment_name}  {r.scoring_uri or ''}")
        lines.extend(f"  {line}" for line in _endpoint_cost(r)[0])
    lines.extend(rollout_lines(r))
    if r.smoke_test and r.smoke_test.answer:
        lines.append(f"  smoke test answer: {r.smoke_test.answer[:300]}")
    for err in r.errors:
        lines.append(f"  error: {err}")
    for note in r.notes:
        lines.append(f"  note: {note}")
    lines.extend(notification_lines(r))
    return lines


def notification_lines(r: RunRecord) -> list[str]:
    """Each notification the run owes or sent, per destination, with its tries (shared/services/delivery.py)."""
    lines: list[str] = []
    for event in r.outbox.events:
        for d in event.deliveries:
            if d.state == "owed":
                when = f"next try {d.due_at.isoformat()}" if d.due_at else "first try on the next delivery run"
                where = f"owed, {d.tries} tries, {when}"
            elif d.state == "delivered":
                where = f"delivered after {d.tries} tries"
            else:
                where = f"failed after {d.tries} tries: {d.reason}"
            lines.append(f"  notification {event.event} to {d.target}: {where}")
            for a in d.attempts:
                status = f"HTTP {a.status}" if a.status is not None and not a.outcome.startswith("HTTP") else ""
                lines.append(f"    {a.at.isoformat()}  {a.outcome}{'  ' + status if status else ''}")
    return lines


def _endpoint_cost(record: RunRecord) -> tuple[list[str], dict[str, Any] | None]:
    """Uptime and cost of the run's endpoint, and what idle cleanup saved (autopilot/cost_lines.py)."""
    from shared import runtime

    try:
        table = PriceTable.load(runtime.settings().price_table or None)
    except PriceTableError as exc:
        return [f"cost: {exc}"], None
    return endpoint_cost(record, table, datetime.now(UTC))


def rollout_lines(r: RunRecord) -> list[str]:
    """A canary's progress on its shared endpoint (shared/services/canary.py), or a replaced run's grace."""
    lines: list[str] = []
    canary = r.canary
    if canary is not None:
        until = f", observed until {canary.observe_until.isoformat()}" if canary.observe_until else ""
        lines.append(
            f"  canary: {canary.phase.value} at {canary.percent}% beside {canary.previous_deployment}"
            f" (run {canary.previous_run}){until}"
        )
        for side, seen in (("canary", canary.canary_seen), ("previous", canary.previous_seen)):
            if seen is not None:
                lines.append(f"    {side}: {seen.requests} requests, {seen.errors} 5xx ({seen.error_rate:.1%})")
    if r.rollout is not None and r.rollout.replaced_by:
        kept = r.rollout.retire_after.isoformat() if r.rollout.retire_after else None
        lines.append(f"  replaced by run {r.rollout.replaced_by}; deployment kept until {kept}")
    return lines


def _progress(record: RunRecord) -> str | None:
    if record.state not in (RunState.SUBMITTED, RunState.RUNNING) or not record.job_name:
        return None
    from shared import runtime

    try:
        return runtime.platform().get_job(record.job_name).progress
    except Exception:
        return None


def _age(iso: str | None, now: datetime) -> str:
    if not iso:
        return "-"
    try:
        seconds = max(0, int((now - datetime.fromisoformat(iso)).total_seconds()))
    except ValueError:
        return "-"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def orphan_lines(store: Any) -> list[str]:
    """The orphans the last reconcile recorded (shared/services/orphans.py): app-tagged, no ledger row."""
    from shared.services.orphans import read_orphans

    try:
        orphans = read_orphans(store.status)
    except Exception as exc:  # the runs were shown; say why this part is not
        return [f"orphans: not read ({type(exc).__name__})"]
    if not orphans:
        return []
    now = store.clock()
    lines = [
        "",
        f"orphans: {len(orphans)} app-tagged thing(s) with no run in the ledger (reconcile records and removes them)",
        f"  {'kind':<9} {'name':<44} {'run id':<32} {'state':<11} {'age':>7}  action",
    ]
    for o in orphans:
        age = _age(o.created_at or o.first_seen, now)
        lines.append(f"  {o.kind:<9} {o.name:<44} {o.run_id:<32} {o.state:<11} {age:>7}  {o.action}")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    from shared import runtime
    from shared.status import status_document

    store = runtime.run_store()
    try:
        if args.run:
            record = _find(store, args.run)
        else:
            records, more = _page(store, args)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except Exception as exc:
        print(
            f"cannot read the run ledger ({type(exc).__name__}); {storage_hint(runtime.settings())}",
            file=sys.stderr,
        )
        return 1
    if not args.run:
        if args.json:
            print(json.dumps([status_document(r) for r in records], indent=2, default=str))
        elif not records:
            print("no runs" + (" in that state" if args.state else " yet (drop a config: autopilot submit FILE)"))
        else:
            for r in records:
                print(_summary_row(r))
            if more:
                print(f"(newest first; more: --page {args.page + 1}, or --all)")
        if not args.json:
            for line in orphan_lines(store):
                print(line)
        return 0
    if record is None:
        print(f"no run matches {args.run!r}", file=sys.stderr)
        return 1
    if not args.follow:
        if args.json:
            document = status_document(record)
            cost = _endpoint_cost(record)[1]
            if cost is not None:
                document["endpoint_cost"] = cost
            print(json.dumps(document, indent=2, default=str))
        else:
            print("\n".join(_detail_lines(record, _progress(record))))
        return 0
    return follow(record.run_id, as_json=args.json)


def _clock(iso: str) -> str:
    """HH:MM:SS of a timeline entry, in local time like the progress lines."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return time.strftime("%H:%M:%S")


def follow(
    run: str,
    *,
    as_json: bool = False,
    until: frozenset[RunState] = FOLLOW_DONE,
    timeout_s: float | None = None,
    out: Any = None,
    since: datetime | None = None,
) -> int:
    """Print state changes and job progress until the run reaches ``until``. Returns 0, or 1 on failure."""
    from shared import runtime
    from shared.status import status_document

    out = out or sys.stdout
    store = runtime.run_store()
    shown_states: set[str] = set()
    seen_progress: str | None = None
    started = time.monotonic()
    while True:
        record = store.get(run)
        if record is None:
            print(f"run {run} is not in the ledger", file=out)
            return 1
        # The timeline has every state the run entered, also those passed between two looks.
        new_states = [
            (s, at)
            for s, at in record.timeline.items()
            if s not in shown_states and (since is None or datetime.fromisoformat(at) >= since)
        ]
        if new_states:
            shown_states.update(s for s, _ in new_states)
            if as_json:
                print(json.dumps(status_document(record), default=str), file=out)
            else:
                for state, at in new_states:
                    print(f"{_clock(at)}  {record.run_id}: {state}", file=out)
                for err in record.errors:
                    print(f"    error: {err}", file=out)
        progress = _progress(record)
        if progress and progress != seen_progress and not as_json:
            seen_progress = progress
            print(f"{time.strftime('%H:%M:%S')}    {progress}", file=out)
        out.flush()
        if record.state in until:
            bad = {RunState.REJECTED, RunState.FAILED, RunState.CANCELED, RunState.DEPLOY_FAILED}
            return 1 if record.state in bad else 0
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            print(f"gave up following after {timeout_s:.0f} s (state {record.state.value})", file=out)
            return 1
        time.sleep(FOLLOW_INTERVAL_S)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {value!r}")
    return number


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a training config; one line per error")
    p.add_argument("file")
    p.set_defaults(func=cmd_validate, settings=NO_SETTINGS)

    p = sub.add_parser("submit", help="upload a training config to the config container")
    p.add_argument("file")
    p.add_argument("--name", help="blob name in the container (default: the file name)")
    p.add_argument("--force", action="store_true", help="upload even if it does not validate")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="runs and their state, newest first, a page at a time")
    p.add_argument("run", nargs="?", help="run id, config name, or a prefix of a run id")
    p.add_argument("--limit", type=_positive, default=STATUS_PAGE, help=f"runs per page (default {STATUS_PAGE})")
    p.add_argument("--page", type=_positive, default=1, help="which page, 1 the newest")
    p.add_argument("--all", action="store_true", help="every run (reads the whole ledger)")
    p.add_argument("--state", action="append", help="only runs in this state (repeat or comma-separate)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--follow", action="store_true", help="print changes until the run finishes or deploys")
    p.set_defaults(func=cmd_status)
