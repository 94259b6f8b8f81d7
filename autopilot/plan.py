"""``autopilot plan FILE``: what a submit would do, without submitting.

The plan is ``shared.services.planning.build_plan``, the function submit itself runs, so the preview is the
job that would run: effective parameters with their origin, the compute checks, the names derived from the
run id and, on Azure ML, the pipeline job serialised from the SDK's own objects and whether the config's
datastore paths exist (read with your login where the workspace can be reached; otherwise the plan says it
could not check). With ``--component`` and ``--model-spec`` (or ``--model-tags``) the Azure ML plan needs no
Azure access at all. Exit codes: 0 the submit would be accepted, 1 it would be rejected or its job would fail
on missing data (one line per reason), 2 the plan could not be made (bad arguments, no access).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from autopilot.cost_lines import plan_cost
from autopilot.datastore import DataCheck, check_paths, workspace_locator
from shared.config.loader import load_config
from shared.config.model import TrainingConfig
from shared.config.model_tags import AllowList
from shared.costs import PriceTable, PriceTableError
from shared.exceptions import AutopilotError, ConfigError, FieldIssue, RejectedError
from shared.naming import config_name, run_id
from shared.notify_eventgrid import allowed_topics
from shared.services.planning import SubmissionPlan, build_plan
from shared.settings import Settings

REJECTED = 1
CANNOT_PLAN = 2


@dataclasses.dataclass
class PlanOutput:
    """Everything printed, in one place, for the text and the JSON form."""

    file: str
    blob: str
    platform: str
    offline: list[str]
    plan: SubmissionPlan
    job: dict[str, Any]
    job_yaml: str
    notes: list[str]
    cost_lines: list[str] = dataclasses.field(default_factory=list)
    cost: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: list[DataCheck] = dataclasses.field(default_factory=list)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show what a submit would do (parameters, compute checks, the job), without submitting",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="a training config (YAML or JSON)")
    parser.add_argument(
        "--platform",
        choices=("azureml", "local"),
        default=None,
        help="default: azureml with --component/--model-tags/--model-spec, else AUTOPILOT_PLATFORM (the settings)",
    )
    parser.add_argument(
        "--component",
        type=Path,
        metavar="SPEC.yaml",
        help="Azure ML: load the pipeline component from this spec instead of the registry",
    )
    parser.add_argument(
        "--model-tags",
        type=Path,
        metavar="TAGS.json",
        help="Azure ML: the foundation model's tags from this file instead of the registry",
    )
    parser.add_argument(
        "--model-spec",
        type=Path,
        metavar="MODEL.spec.yaml",
        help="Azure ML: the foundation model from its registry asset spec (tags, system_metadata with allow lists "
        "and lifecycle dates, isArchived) instead of the registry",
    )
    parser.add_argument(
        "--hours",
        type=_positive_number,
        metavar="H",
        help="cost: how long you expect training to run (the estimate multiplies the compute's price by it)",
    )
    parser.add_argument(
        "--seconds-per-step",
        type=_positive_number,
        metavar="S",
        help="cost: seconds per optimizer step, e.g. from an earlier run; with the steps counted from the data "
        "this gives the hours",
    )
    parser.add_argument(
        "--rows", type=int, metavar="N", help="cost: rows in data.train, when the plan cannot count them (remote data)"
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(func=run)


def _positive_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, not {value!r}")
    return number


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return CANNOT_PLAN


def _rejected(issues: list[FieldIssue], as_json: bool, heading: str = "A submit would be rejected") -> int:
    if as_json:
        print(json.dumps({"rejected": [{"path": i.path, "message": i.message} for i in issues]}, indent=2))
    else:
        print(f"{heading} ({len(issues)} reason{'s' if len(issues) != 1 else ''}):", file=sys.stderr)
        for issue in issues:
            print(f"  {issue}", file=sys.stderr)
        if any("under the data root" in issue.message for issue in issues):
            print(
                "  (data paths are relative to AUTOPILOT_DATA_ROOT: set it to the folder that holds them, "
                "e.g. AUTOPILOT_DATA_ROOT=samples)",
                file=sys.stderr,
            )
    return REJECTED


def _platform(settings: Settings, name: str, args: argparse.Namespace) -> Any:
    """The adapter to plan against; Azure ML with the offline stand-ins given on the command line."""
    chosen = dataclasses.replace(settings, platform=name)
    if name == "azureml":
        try:
            from shared.platform.azureml.adapter import AzureMLPlatform
            from shared.platform.azureml.offline import OfflineSources
        except ImportError as exc:
            raise AutopilotError(f"the Azure ML adapter cannot be imported ({exc}); install requirements.txt") from None
        return AzureMLPlatform(chosen, offline=OfflineSources(args.component, args.model_tags, args.model_spec))
    from shared.runtime import build_platform

    try:
        return build_platform(chosen)
    except ImportError as exc:
        raise AutopilotError(
            f"the local platform is not available ({exc}); install requirements-local.txt, or plan with "
            "--platform azureml"
        ) from None


def _data_checks(platform: Any, plan: SubmissionPlan) -> list[DataCheck]:
    """Whether the config's datastore paths exist, read with the person's login where the workspace is reachable."""
    data = {split: uri for split, uri in plan.config.data.model_dump().items() if uri}
    if platform.offline.no_workspace:
        why = "offline: the plan makes no workspace call (--component with --model-spec or --model-tags)"
        return check_paths(data, None, why_not=why)
    try:
        workspace = platform.clients.workspace
    except AutopilotError as exc:
        return check_paths(data, None, why_not=f"the workspace cannot be reached ({exc})")
    return check_paths(data, workspace_locator(workspace, platform.clients.credential))


def _sdk_validation(job: Any) -> list[FieldIssue]:
    """The SDK's own client-side checks of the job (the ones ``jobs.create_or_update`` runs first)."""
    result = job._validate()
    if result.passed:
        return []
    return [FieldIssue(f"job.{path}", str(message)) for path, message in sorted(result.error_messages.items())]


@dataclasses.dataclass
class _Job:
    """The job as the plan shows it, with what making it noted and found."""

    as_dict: dict[str, Any]
    as_yaml: str
    notes: list[str]
    data: list[DataCheck] = dataclasses.field(default_factory=list)


def _make(args: argparse.Namespace) -> PlanOutput | int:
    """The plan, or the exit code once the reason it cannot be made is printed."""
    path: Path = args.file
    try:
        content = path.read_bytes()
    except OSError as exc:
        return _error(f"cannot read {path}: {exc.strerror or exc}")
    from shared import runtime

    settings = runtime.settings()  # read by autopilot.main (autopilot/settings.py)
    stand_ins = _stand_ins(args)
    name = _platform_name(args, settings, stand_ins)
    if isinstance(name, int):
        return name
    try:
        config = load_config(content)
    except ConfigError as exc:
        return _rejected(exc.issues, args.json)
    made = _plan_and_job(args, settings, name, config, content)
    if isinstance(made, int):
        return made
    plan, job = made
    cost = _cost(args, settings, plan)
    if isinstance(cost, int):
        return cost
    cost_lines, cost_json = cost
    return PlanOutput(
        str(path),
        f"{settings.config_container}/{path.name}",
        name,
        [f"{flag} {value}" for flag, value in stand_ins],
        plan,
        job.as_dict,
        job.as_yaml,
        job.notes,
        cost_lines,
        cost_json,
        job.data,
    )


def _stand_ins(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The Azure ML offline stand-ins named on the command line, as (flag, file)."""
    given = (("--component", args.component), ("--model-tags", args.model_tags), ("--model-spec", args.model_spec))
    return [(flag, value) for flag, value in given if value is not None]


def _platform_name(args: argparse.Namespace, settings: Settings, stand_ins: list[tuple[str, Path]]) -> str | int:
    """The platform to plan on, or exit code 2 where the stand-ins are missing or do not fit it."""
    for flag, value in stand_ins:
        if not value.is_file():
            # A file named on the command line that is not there is a usage error (2), not a rejection (1).
            return _error(f"{flag}: no such file: {value}" if not value.exists() else f"{flag}: {value} is not a file")
    if args.model_tags and args.model_spec:
        return _error("give --model-tags or --model-spec, not both (both describe the foundation model)")
    # The offline stand-ins only exist for Azure ML, so giving one picks it unless a platform is named.
    name: str = args.platform or ("azureml" if stand_ins else settings.platform)
    if name != "azureml" and stand_ins:
        return _error("--component, --model-tags and --model-spec apply to --platform azureml only")
    return name


def _plan_and_job(
    args: argparse.Namespace, settings: Settings, name: str, config: TrainingConfig, content: bytes
) -> tuple[SubmissionPlan, _Job] | int:
    """The plan submit would make (``build_plan``) and the job it would submit, or the exit code why not."""
    blob = args.file.name
    run = run_id(settings.config_container, blob, content)
    try:
        platform = _platform(settings, name, args)
        plan = build_plan(
            config,
            run_id=run,
            config_blob=blob,
            config_name=config_name(blob),
            platform=platform,
            data_root=settings.data_root,
            quota_check=settings.quota_check,
            event_grid_topics=allowed_topics(settings.event_grid_topics),
            notify_allow_private=settings.notify_allow_private_addresses,
        )
        job = _azureml_job(args, settings, platform, plan) if name == "azureml" else _local_job(plan)
    except RejectedError as exc:
        return _rejected(exc.issues, args.json)
    except AutopilotError as exc:
        hint = ""
        if name == "azureml" and not (args.component and (args.model_tags or args.model_spec)):
            # The error says how to sign in (shared/identity.py); the plan can also do without Azure.
            hint = " (to plan without Azure access pass --component and --model-spec or --model-tags)"
        return _error(f"{exc}{hint}")
    return job if isinstance(job, int) else (plan, job)


def _azureml_job(args: argparse.Namespace, settings: Settings, platform: Any, plan: SubmissionPlan) -> _Job | int:
    """The pipeline job serialised from the SDK's objects, once its data paths and the SDK's checks pass."""
    notes = list(plan.notes)
    built = platform.build_pipeline_job(plan.job)
    notes.extend(built.notes)
    data_checks = _data_checks(platform, plan)
    missing = [
        FieldIssue(c.field, f"{c.uri}: {c.message}; the job would fail reading it")
        for c in data_checks
        if c.outcome == "missing"
    ]
    if missing:
        return _rejected(missing, args.json, heading="The job would fail")
    issues = _sdk_validation(built.job)
    if issues:
        return _rejected(issues, args.json)
    from shared.platform.azureml.pipeline import job_to_dict, job_to_yaml

    reference = None
    if args.component is not None:
        # A registry component appears in the job by reference; the offline spec is loaded inline.
        component = built.component
        reference = (
            f"azureml://registries/{settings.azureml_registry}/components/{component.name}/versions/{component.version}"
        )
        notes.append(f"component loaded from {args.component}, shown by its registry reference")
    job_dict = job_to_dict(built.job)
    return _Job(job_dict, job_to_yaml(built.job, collapse_component=reference), notes, data_checks)


def _local_job(plan: SubmissionPlan) -> _Job:
    """The local platform's job request as it is."""
    job_dict = dataclasses.asdict(plan.job)
    # asdict leaves the pydantic parameters an object, which neither YAML nor JSON can write.
    job_dict["params"] = plan.job.params.model_dump(mode="json")
    return _Job(job_dict, yaml.safe_dump(job_dict, sort_keys=False), list(plan.notes))


def _cost(args: argparse.Namespace, settings: Settings, plan: SubmissionPlan) -> tuple[list[str], dict[str, Any]] | int:
    """The cost lines and their JSON form, from the price table; exit code 2 when the table or --rows is bad."""
    try:
        table = PriceTable.load(settings.price_table or None)
    except PriceTableError as exc:
        return _error(str(exc))
    if args.rows is not None and args.rows < 1:
        return _error(f"--rows must be at least 1, not {args.rows}")
    return plan_cost(
        plan,
        table,
        hours=args.hours,
        seconds_per_step=args.seconds_per_step,
        rows=args.rows,
        data_root=settings.data_root,
    )


def _allow_list_line(allow: AllowList | None) -> str:
    return "allow list " + (allow.describe() if allow is not None else "unreadable (see the rejection)")


def _print_text(out: PlanOutput) -> None:
    plan = out.plan
    model = plan.foundation_model
    compute = plan.compute
    where = f" [offline: {', '.join(out.offline)}]" if out.offline else ""
    print(f"Plan for {out.file} on {out.platform}{where}")
    print(f"  run id {plan.run_id} (the config uploaded as {out.blob})")
    print()
    print("Foundation model")
    print(f"  {model.name} version {model.version}: {model.id}")
    life = plan.lifecycle
    if life.archived or life.dates:
        print(f"  lifecycle: {life.describe('finetune')}")
        if plan.config.deployment.enabled:
            print(f"  lifecycle: {life.describe('inference')}")
    print()
    print("Effective parameters (origin: default < model < config)")
    record = plan.params.to_record()
    width = max(len(k) for k in record)
    for key, entry in record.items():
        value = json.dumps(entry["value"]) if not isinstance(entry["value"], str) else entry["value"]
        print(f"  {key:<{width}}  {value:<12} {entry['source']}")
    print()
    print("Compute checks")
    print(f"  fine-tune: {_allow_list_line(plan.finetune_allow)}")
    print(
        f"  fine-tune: {compute.cluster}, VM size {compute.size}, {compute.gpus_per_node} GPU(s) per node, "
        f"{plan.job.params.num_nodes_finetune} node(s): accepted"
    )
    if plan.inference_instance_type:
        print(f"  inference: {_allow_list_line(plan.inference_allow)}")
        print(f"  inference: {plan.inference_instance_type}: accepted")
    else:
        print("  inference: deployment disabled")
    print()
    print("Quota and capacity" + (" (AUTOPILOT_QUOTA_CHECK=off)" if not plan.capacity else ""))
    for check in plan.capacity:
        print(f"  {check.path}: {check.outcome.value.replace('_', ' ')}: {check.message}")
    if out.data:
        print()
        print("Data (datastore paths, read with your login)")
        for found in out.data:
            print(f"  {found.field}: {found.uri}: {found.outcome.replace('_', ' ')}: {found.message}")
    print()
    print("Cost (estimate at list price, from the price table; not a quote)")
    for line in out.cost_lines:
        print(f"  {line}")
    print()
    print("Names")
    job = plan.job
    for label, value in (
        ("job", job.name),
        ("experiment", job.experiment_name),
        ("display name", job.display_name),
        ("model", plan.model_name),
        ("endpoint", plan.endpoint_name if plan.config.deployment.enabled else "-"),
        ("deployment", plan.deployment_name if plan.config.deployment.enabled else "-"),
    ):
        print(f"  {label:<13}{value}")
    if out.notes:
        print()
        print("Notes")
        for note in out.notes:
            print(f"  - {note}")
    print()
    print("Pipeline job (azure.ai.ml PipelineJob, serialised)" if out.platform == "azureml" else "Job request")
    print("---")
    print(out.job_yaml.rstrip())


def _print_json(out: PlanOutput) -> None:
    plan = out.plan
    print(
        json.dumps(
            {
                "file": out.file,
                "platform": out.platform,
                "offline": out.offline,
                "run_id": plan.run_id,
                "foundation_model": dataclasses.asdict(plan.foundation_model),
                "effective_params": plan.params.to_record(),
                "compute": dataclasses.asdict(plan.compute),
                "inference_instance_type": plan.inference_instance_type,
                "allow_lists": {
                    a.kind: {"skus": a.skus, "source": a.source}
                    for a in (plan.finetune_allow, plan.inference_allow)
                    if a is not None
                },
                "lifecycle": {
                    "archived": plan.lifecycle.archived,
                    "dates": {k: v.isoformat() for k, v in plan.lifecycle.dates.items()},
                    "source": plan.lifecycle.source,
                },
                "names": {
                    "job": plan.job.name,
                    "experiment": plan.job.experiment_name,
                    "display_name": plan.job.display_name,
                    "model": plan.model_name,
                    "endpoint": plan.endpoint_name,
                    "deployment": plan.deployment_name,
                },
                "smoke_request": plan.smoke_request,
                "capacity": [{"path": c.path, "outcome": c.outcome.value, "message": c.message} for c in plan.capacity],
                "cost": out.cost,
                "data": [dataclasses.asdict(c) for c in out.data],
                "notes": out.notes,
                "job": out.job,
            },
            indent=2,
            default=str,
        )
    )


def run(args: argparse.Namespace) -> int:
    result = _make(args)
    if isinstance(result, int):
        return result
    if args.json:
        _print_json(result)
    else:
        _print_text(result)
    return 0
