"""What ``autopilot plan`` and ``autopilot status`` say about money: estimates at list price from the price
table (shared/costs.py), each with the price it used and where that price came from."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.costs import (
    NO_PRICE,
    PriceTable,
    duration,
    endpoint_cost_per_day,
    hours_between,
    money,
    training_cost,
    training_steps,
)
from shared.ledger.record import RunRecord
from shared.services.planning import SubmissionPlan
from shared.states import RunState

IDLE_NOTE = "endpoint deleted: idle"


def count_rows(path: str, data_root: Path) -> int | None:
    """Rows of a local JSONL file under the data root; None for remote data (counted by nobody offline)."""
    if "://" in path or path.startswith("azureml:"):
        return None
    file = (data_root / path).resolve()
    if not file.is_relative_to(data_root.resolve()) or not file.is_file():
        return None
    with file.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def plan_cost(
    plan: SubmissionPlan,
    table: PriceTable,
    *,
    hours: float | None,
    seconds_per_step: float | None,
    rows: int | None,
    data_root: Path,
) -> tuple[list[str], dict[str, Any]]:
    """The plan's cost lines and their JSON form."""
    lines: list[str] = []
    params = plan.job.params
    nodes = int(params.num_nodes_finetune)
    size = plan.compute.size
    counted = rows if rows is not None else count_rows(plan.job.train_data, data_root)
    steps = None
    capped = False
    devices = max(plan.compute.gpus_per_node, 1)  # a CPU run (local-cpu, 0 GPUs) is one process
    if counted is not None:
        shape = (
            counted,
            int(params.num_train_epochs),
            int(params.per_device_train_batch_size),
            int(params.gradient_accumulation_steps),
            devices,
            nodes,
        )
        steps = training_steps(*shape, int(params.max_steps))
        capped = steps < training_steps(*shape, -1)
    if hours is None and seconds_per_step is not None and steps is not None:
        hours = steps * seconds_per_step / 3600
    price = table.get(size)
    out: dict[str, Any] = {"training": {"sku": size, "nodes": nodes, "rows": counted, "steps": steps, "hours": hours}}
    if steps is not None:
        origin = "--rows" if rows is not None else "data.train"
        lines.append(
            f"training: {steps:,} optimizer steps ({counted:,} rows from {origin} x {params.num_train_epochs} "
            f"epoch(s) over a global batch of {params.per_device_train_batch_size * params.gradient_accumulation_steps}"
            f" x {devices} device(s) x {nodes} node(s)"
            + (f", capped by max_steps {params.max_steps})" if capped else ")")
        )
    if price is None:
        lines.append(f"training: {size}: {NO_PRICE}")
    else:
        per_hour = training_cost(price, nodes, 1)
        out["training"].update(usd_per_hour=per_hour, price=asdict(price))
        lines.append(f"training: {nodes} node(s) x {size} at {price.cite()} = {money(per_hour)} per hour")
        if hours is not None:
            total = training_cost(price, nodes, hours)
            out["training"]["usd_estimate"] = total
            how = "--hours" if seconds_per_step is None or steps is None else "steps x --seconds-per-step"
            lines.append(f"training: about {money(total)} for {duration(hours)} ({how}; an estimate, not a quote)")
        else:
            more = "--seconds-per-step S" if steps is not None else "--rows N with --seconds-per-step S"
            need = f"--hours H, or {more}"
            lines.append(f"training: total not estimated: the run's duration is unknown (give {need})")
    if plan.inference_instance_type:
        instances = plan.config.deployment.instance_count
        endpoint = table.get(plan.inference_instance_type)
        out["endpoint"] = {"sku": plan.inference_instance_type, "instances": instances}
        if endpoint is None:
            lines.append(f"endpoint: {plan.inference_instance_type}: {NO_PRICE}")
        else:
            per_day = endpoint_cost_per_day(endpoint, instances)
            out["endpoint"].update(usd_per_day=per_day, price=asdict(endpoint))
            idle = plan.config.cleanup.idle_after_minutes
            keep = (
                " (cleanup.keep: never deleted when idle)"
                if plan.config.cleanup.keep
                else (f" until idle cleanup deletes it ({idle} min without a request)")
            )
            lines.append(
                f"endpoint: {instances} instance(s) x {plan.inference_instance_type} at {endpoint.cite()} = "
                f"{money(per_day)} per day while it is up{keep}"
            )
    return lines, out


def endpoint_cost(record: RunRecord, table: PriceTable, now: datetime) -> tuple[list[str], dict[str, Any] | None]:
    """For ``autopilot status RUN``: how long the endpoint has been up, and what idle cleanup saved."""
    up_since = record.timeline.get(RunState.DEPLOYED.value)
    if not up_since or not record.endpoint_name:
        return [], None
    start = datetime.fromisoformat(up_since)
    deleted_at = record.timeline.get(RunState.DELETED.value)
    end = datetime.fromisoformat(deleted_at) if deleted_at else now
    instances = record.config.deployment.instance_count if record.config is not None else 1
    price = table.get(record.inference_instance_type)
    up_hours = hours_between(start, end)
    info: dict[str, Any] = {"up_since": up_since, "up_hours": round(up_hours, 3), "instances": instances}
    was = "was up" if deleted_at else "up"
    line = f"endpoint {was} {duration(up_hours)} (since {up_since})"
    if price is None:
        lines = [f"{line}; {record.inference_instance_type or 'its SKU'}: {NO_PRICE}"]
        return lines, info
    spent = price.usd_per_hour * instances * up_hours
    info.update(usd_while_up=round(spent, 2), price=asdict(price))
    lines = [f"{line}: about {money(spent)} at {price.cite()} x {instances} instance(s)"]
    idle_deleted = any(note.startswith(IDLE_NOTE) for note in record.notes)
    if deleted_at and idle_deleted and record.state == RunState.DELETED:
        per_day = endpoint_cost_per_day(price, instances)
        since = hours_between(datetime.fromisoformat(deleted_at), now)
        saved = price.usd_per_hour * instances * since
        info.update(idle_saved_usd_per_day=round(per_day, 2), idle_saved_usd_so_far=round(saved, 2))
        lines.append(
            f"idle cleanup saves {money(per_day)} per day: about {money(saved)} so far ({duration(since)} since it "
            "deleted the endpoint, had it kept running)"
        )
    return lines, info
