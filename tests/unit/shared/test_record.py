"""The run record's stored form: its round trip through plain data, its typed parts, the canary's phase machine
and the schema version with its migrations."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.exceptions import FieldIssue
from shared.ledger.parts import Actor, Approval, Canary, Health, Observed, Rollout, SmokeTest
from shared.ledger.record import RECORD_SCHEMA, SCHEMA_KEY, RecordSchemaError, RunRecord, migrate
from shared.states import PHASE_TRANSITIONS, IllegalPhaseMove, RolloutPhase, RunState
from shared.status import status_document


def test_round_trip_keeps_the_timeline_in_time_order_even_from_sorted_json() -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    record = RunRecord(
        run_id="r-1",
        state=RunState.DEPLOYED,
        config_blob="r.yaml",
        config_name="r",
        created_at=now,
        updated_at=now,
        timeline={
            "received": "2026-11-01T12:00:00+00:00",
            "submitted": "2026-11-01T12:00:01+00:00",
            "running": "2026-11-01T12:00:05+00:00",
            "completed": "2026-11-01T12:09:00+00:00",
            "deployed": "2026-11-01T12:20:00+00:00",
        },
    )
    # The table adapter writes JSON with sorted keys: alphabetical, not chronological.
    stored = json.loads(json.dumps(record.to_dict(), sort_keys=True))
    assert list(stored["timeline"]) == ["completed", "deployed", "received", "running", "submitted"]
    again = RunRecord.from_dict(stored)
    assert list(again.timeline) == ["received", "submitted", "running", "completed", "deployed"]
    assert again == record


T = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def canary(phase: RolloutPhase = RolloutPhase.DEPLOYING) -> Canary:
    return Canary("ft-line", "d-old", "line-00000001", 20, phase)


def test_a_canary_moves_only_where_its_phase_leads() -> None:
    for current, targets in PHASE_TRANSITIONS.items():
        for target in RolloutPhase:
            if target in targets:
                assert canary(current).moved(target).phase == target
            else:
                with pytest.raises(IllegalPhaseMove, match=f"{current.value} cannot become {target.value}"):
                    canary(current).moved(target)
    assert not PHASE_TRANSITIONS[RolloutPhase.FAILED] and not PHASE_TRANSITIONS[RolloutPhase.ROLLED_BACK]


def test_the_stored_parts_keep_the_shape_the_status_blob_has_always_shown() -> None:
    observing = canary().moved(
        RolloutPhase.OBSERVING, started_at=T, observe_until=T, canary_seen=Observed(41, 10, 0.2439, True)
    )
    assert Rollout(observing, replaced_by="line-00000003", retire_after=T).to_json() == {
        "role": "canary",
        "endpoint": "ft-line",
        "previous_deployment": "d-old",
        "previous_run": "line-00000001",
        "percent": 20,
        "phase": "observing",
        "started_at": T.isoformat(),
        "observe_until": T.isoformat(),
        "canary": {"requests": 41, "errors": 10, "error_rate": 0.2439, "known": True},
        "replaced_by": "line-00000003",
        "retire_after": T.isoformat(),
    }
    assert Rollout(replaced_by="r-2").to_json() == {"replaced_by": "r-2"}  # a replaced run that was no canary
    assert SmokeTest({"input_data": {}}).to_json() == {"request": {"input_data": {}}}
    assert SmokeTest({}, "hi", T).to_json() == {"request": {}, "answer": "hi", "at": T.isoformat()}
    assert Approval("rejected", "ben", T, "off-topic").to_json() == {
        "decision": "rejected",
        "by": "ben",
        "at": T.isoformat(),
        "reason": "off-topic",
    }
    record = RunRecord("r-1", RunState.FAILED, "r.yaml", "r", T, T, errors=[FieldIssue("job", "out of memory")])
    assert status_document(record)["errors"] == [{"path": "job", "message": "out of memory"}]


def test_parts_read_back_from_their_stored_form() -> None:
    rolled = canary(RolloutPhase.OBSERVING).moved(RolloutPhase.ROLLED_BACK, rolled_back=Actor("ana", T))
    for rollout in (Rollout(rolled, retire_after=T), Rollout(replaced_by="r-2", deployment_deleted_at=T), Rollout()):
        assert Rollout.from_json(json.loads(json.dumps(rollout.to_json()))) == rollout
    assert Health.from_json(Health(3, T).to_json()) == Health(3, T) and Health().to_json() == {}


def test_a_stored_run_is_brought_to_the_current_schema_by_its_migrations() -> None:
    def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "notes": [*data["notes"], "migrated"]}

    stored = {"run_id": "r-1", "notes": []}
    assert migrate(stored, {1: v1_to_v2}, current=2) == {"run_id": "r-1", "notes": ["migrated"], SCHEMA_KEY: 2}
    assert migrate({**stored, SCHEMA_KEY: 2}, {1: v1_to_v2}, current=2)["notes"] == []  # already current
    with pytest.raises(RecordSchemaError, match="no migration from run schema 1 to 2"):
        migrate(stored, {}, current=2)
    with pytest.raises(RecordSchemaError, match="stored in schema 3; this release reads up to 2"):
        migrate({**stored, SCHEMA_KEY: 3}, {1: v1_to_v2}, current=2)
    # Rows from before the version existed are in the first version's form, and owe no notification.
    assert migrate(stored)[SCHEMA_KEY] == RECORD_SCHEMA == 2
    assert migrate(stored)["outbox"] == {"events": []}
