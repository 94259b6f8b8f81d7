"""A run as the ledger stores it: typed fields in memory, a versioned JSON-ready form in storage. No SDK here.

The stored form carries ``schema_version``. A change to it bumps ``RECORD_SCHEMA`` and registers in
``MIGRATIONS`` the function that turns the previous version's form into the new one, so a stored run is read
by a migration, never by a guess; a form newer than this code knows is refused. Rows without a version were
written before it existed, in the form of version 1 (the health counters then sat in ``attempts`` and are not
carried over: a count of failed probes starts again, which only delays an unhealthy endpoint's deletion).
Version 2 added the outbox (shared/ledger/outbox.py): a release that does not know it must not read, and so
rewrite without, a run that still owes notifications.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from shared.config.model import NotifySection, TrainingConfig
from shared.config.params import Param
from shared.exceptions import FieldIssue
from shared.ledger.outbox import Outbox
from shared.ledger.parts import (
    Approval,
    Canary,
    Health,
    Rollout,
    SmokeTest,
    errors_from_json,
    errors_to_json,
)
from shared.states import RunState

RECORD_SCHEMA = 2
SCHEMA_KEY = "schema_version"
Migration = Callable[[dict[str, Any]], dict[str, Any]]


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 has the outbox; a version 1 run owes nothing (its notifications were sent inline)."""
    return {**data, "outbox": data.get("outbox") or Outbox().to_json()}


# version -> the function that turns a stored run of that version into the next version's form.
MIGRATIONS: dict[int, Migration] = {1: _v1_to_v2}


class RecordSchemaError(ValueError):
    """A stored run in a form this code cannot read (written by a newer release, or a migration is missing)."""


@dataclass
class RunRecord:
    """Everything known about one run. ``etag`` is the storage version this copy was read at."""

    run_id: str
    state: RunState
    config_blob: str
    config_name: str
    created_at: datetime
    updated_at: datetime
    config_etag: str | None = None
    config_sha256: str | None = None
    platform: str | None = None
    config: TrainingConfig | None = None  # the validated config
    effective_params: dict[str, Param] | None = None  # every component input, with the layer that set it
    notes: list[str] = field(default_factory=list)
    job_name: str | None = None
    experiment_name: str | None = None
    job_status: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    endpoint_name: str | None = None
    deployment_name: str | None = None
    inference_instance_type: str | None = None
    scoring_uri: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)  # the job's short loss curve, if reported
    # The platform's pages for the job and the endpoint ("job", "endpoint": Azure ML studio URLs), if it has any.
    links: dict[str, str] = field(default_factory=dict)
    smoke_test: SmokeTest | None = None
    timeline: dict[str, str] = field(default_factory=dict)  # state -> ISO time first entered
    errors: list[FieldIssue] = field(default_factory=list)  # what the last failure was about, by field
    last_error_code: str | None = None
    attempts: dict[str, int] = field(default_factory=dict)  # step -> tries, for bounded retries ("submit")
    health: Health = field(default_factory=Health)  # the endpoint's failed probes in a row
    # The config's `notify` section when the config as a whole was rejected (else it is in `config`).
    notify: NotifySection | None = None
    approval: Approval | None = None
    # A deployment onto a shared endpoint (shared/services/canary.py), or one a later canary replaced.
    rollout: Rollout | None = None
    # The notifications the run owes and those it sent, with their attempts (shared/ledger/outbox.py).
    outbox: Outbox = field(default_factory=Outbox)
    # How many times the run was written (RunStore counts): orders copies that reach readers out of order,
    # such as two status mirrors racing. Absent from runs stored before it: they read as 0.
    revision: int = 0
    etag: str | None = None

    @property
    def canary(self) -> Canary | None:
        """The canary this run is on another run's endpoint, or None when the endpoint is its own."""
        return self.rollout.canary if self.rollout is not None else None

    @property
    def manual_approval(self) -> bool:
        """Whether the run waits for a person's decision before it deploys (``deployment.approval: manual``)."""
        return self.config is not None and self.config.deployment.approval == "manual"

    def notify_section(self) -> NotifySection:
        """Who hears about the run: the rejected config's section, else the config's, else nobody."""
        if self.notify is not None:
            return self.notify
        return self.config.notify if self.config is not None else NotifySection()

    def to_dict(self) -> dict[str, Any]:
        """The stored form: JSON-ready, versioned; every value a copy."""
        data: dict[str, Any] = {SCHEMA_KEY: RECORD_SCHEMA}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "etag":
                continue
            encode = _ENCODE.get(f.name)
            data[f.name] = encode(value) if encode is not None and value is not None else copy.deepcopy(value)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        current = migrate(data)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = current.get(f.name)
            if raw is None or f.name == "etag":
                continue  # unset: the field's default
            decode = _DECODE.get(f.name)
            values[f.name] = decode(raw) if decode is not None else raw
        # Storage may hand the timeline back in key order; a timeline reads in the order things happened.
        timeline = values.get("timeline") or {}
        values["timeline"] = dict(sorted(timeline.items(), key=lambda item: datetime.fromisoformat(item[1])))
        return cls(**values)


def migrate(
    data: Mapping[str, Any], migrations: Mapping[int, Migration] = MIGRATIONS, current: int = RECORD_SCHEMA
) -> dict[str, Any]:
    """The stored form of any known version, brought to ``current`` one migration at a time."""
    version = int(data.get(SCHEMA_KEY) or 1)
    if version > current:
        raise RecordSchemaError(
            f"run {data.get('run_id')} is stored in schema {version}; this release reads up to {current}"
        )
    result = dict(data)
    while version < current:
        step = migrations.get(version)
        if step is None:
            raise RecordSchemaError(f"no migration from run schema {version} to {version + 1}")
        result = step(result)
        version += 1
    result[SCHEMA_KEY] = version
    return result


def params_to_json(params: dict[str, Param]) -> dict[str, dict[str, Any]]:
    return {k: {"value": p.value, "source": p.source} for k, p in sorted(params.items())}


def _params_from_json(data: dict[str, Any]) -> dict[str, Param]:
    return {k: Param(v.get("value"), v.get("source", "default")) for k, v in data.items()}


_ENCODE: dict[str, Callable[[Any], Any]] = {
    "state": lambda state: state.value,
    "created_at": datetime.isoformat,
    "updated_at": datetime.isoformat,
    "config": lambda config: config.model_dump(mode="json"),
    "effective_params": params_to_json,
    "smoke_test": SmokeTest.to_json,
    "errors": errors_to_json,
    "health": Health.to_json,
    "notify": lambda notify: notify.model_dump(mode="json"),
    "approval": Approval.to_json,
    "rollout": Rollout.to_json,
    "outbox": Outbox.to_json,
}
# The fields whose stored form is a list or an object (a table property is a scalar: they are kept as JSON text).
NESTED_FIELDS = (
    "config",
    "effective_params",
    "notes",
    "metrics",
    "history",
    "links",
    "smoke_test",
    "timeline",
    "errors",
    "attempts",
    "health",
    "notify",
    "approval",
    "rollout",
    "outbox",
)
_DECODE: dict[str, Callable[[Any], Any]] = {
    "state": RunState,
    "created_at": datetime.fromisoformat,
    "updated_at": datetime.fromisoformat,
    "config": TrainingConfig.model_validate,
    "effective_params": _params_from_json,
    "smoke_test": SmokeTest.from_json,
    "errors": errors_from_json,
    "health": Health.from_json,
    "notify": NotifySection.model_validate,
    "approval": Approval.from_json,
    "rollout": Rollout.from_json,
    "outbox": Outbox.from_json,
    "notes": list,
    "metrics": dict,
    "history": list,
    "links": dict,
    "attempts": dict,
}
