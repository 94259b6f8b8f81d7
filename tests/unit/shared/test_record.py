"""The run record's round trip through plain data (what the table adapter stores)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from shared.ledger.record import RunRecord
from shared.states import RunState


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
