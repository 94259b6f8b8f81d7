"""A run as the ledger stores it. Plain data; no storage SDK here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from shared.states import RunState


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
    config: dict[str, Any] | None = None  # the validated config, normalised (JSON-ready)
    effective_params: dict[str, dict[str, Any]] | None = None  # {name: {"value", "source"}}
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
    smoke_test: dict[str, Any] | None = None
    timeline: dict[str, str] = field(default_factory=dict)  # state -> ISO time first entered
    errors: list[dict[str, str]] = field(default_factory=list)  # [{"path", "message"}] of the last failure
    last_error_code: str | None = None
    attempts: dict[str, int] = field(default_factory=dict)  # step -> tries, for bounded retries
    # The config's `notify` section when the config as a whole was rejected (else it is in `config`).
    notify: dict[str, Any] | None = None
    approval: dict[str, str] | None = None  # {"decision": approved|rejected, "by", "at", "reason"}
    # A deployment onto a shared endpoint (shared/services/canary.py): the previous deployment, the canary's
    # share and window, the error rates seen, the outcome; on a replaced run, who replaced it and until when
    # its deployment is kept for a rollback.
    rollout: dict[str, Any] | None = None
    etag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        values = dict(data)
        values["state"] = RunState(values["state"])
        values["created_at"] = datetime.fromisoformat(values["created_at"])
        values["updated_at"] = datetime.fromisoformat(values["updated_at"])
        # Storage may hand the timeline back in key order; a timeline reads in the order things happened.
        timeline = values.get("timeline") or {}
        values["timeline"] = dict(sorted(timeline.items(), key=lambda item: datetime.fromisoformat(item[1])))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})
