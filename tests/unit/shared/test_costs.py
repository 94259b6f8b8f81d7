"""The price table and the cost arithmetic: every shipped price cites its source, region and date; a SKU with
none is "no price on record"; an override file replaces entries and a bad one names the setting."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from autopilot.cost_lines import endpoint_cost
from shared.costs import SHIPPED_TABLE, PriceTable, PriceTableError, duration, endpoint_cost_per_day, training_steps
from shared.ledger.record import RunRecord
from shared.states import RunState
from tests.configs import CONFIG, training_config

# The SKUs Phi-4's registry entry allows for fine-tuning and inference (tests/fixtures/azureml/models).
ALLOW_LISTED = (
    "Standard_NC24ads_A100_v4",
    "Standard_NC48ads_A100_v4",
    "Standard_NC96ads_A100_v4",
    "Standard_ND96asr_v4",
    "Standard_ND96amsr_A100_v4",
    "Standard_NC40ads_H100_v5",
    "Standard_NC80adis_H100_v5",
    "Standard_ND96isr_H100_v5",
)


def test_every_shipped_price_cites_a_source_a_region_and_a_date() -> None:
    prices = json.loads(SHIPPED_TABLE.read_text())["prices"]
    assert set(ALLOW_LISTED) <= set(prices)
    for sku, entry in prices.items():
        date.fromisoformat(entry["as_of"])
        if entry["usd_per_hour"] is not None:
            assert entry["source"].startswith("https://") and entry["region"], sku
        else:
            assert entry["note"], sku  # says what was searched


def test_a_sku_without_a_price_has_none_and_lookups_ignore_case() -> None:
    table = PriceTable.load()
    assert table.get("Standard_ND96amsr_A100_v4") is None
    assert table.get("local-cpu") is None and table.get(None) is None
    price = table.get("standard_nc24ads_a100_v4")
    assert price is not None and price.sku == "Standard_NC24ads_A100_v4" and price.region == "eastus"
    assert "as of 2026-11-09" in price.cite()


def test_an_override_replaces_adds_and_removes(tmp_path: Path) -> None:
    override = tmp_path / "prices.json"
    override.write_text(
        json.dumps(
            {
                "prices": {
                    "Standard_NC24ads_A100_v4": {"usd_per_hour": 4.0, "region": "westeurope", "as_of": "2026-12-01"},
                    "Standard_NC4as_T4_v3": {"usd_per_hour": 0.526, "region": "eastus", "as_of": "2026-12-01"},
                    "Standard_NC96ads_A100_v4": {"usd_per_hour": None},
                }
            }
        )
    )
    table = PriceTable.load(override)
    nc24 = table.get("Standard_NC24ads_A100_v4")
    assert nc24 is not None and (nc24.usd_per_hour, nc24.region, nc24.source) == (4.0, "westeurope", "no source given")
    assert table.get("Standard_NC4as_T4_v3") is not None
    assert table.get("Standard_NC96ads_A100_v4") is None
    assert table.get("Standard_NC48ads_A100_v4") is not None  # the rest stays


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "AUTOPILOT_PRICE_TABLE: cannot read"),
        ("{not json", "AUTOPILOT_PRICE_TABLE: .* is not JSON"),
        ('{"sku": 1}', 'needs a "prices" object'),
        ('{"prices": {"X": {"usd_per_hour": "cheap"}}}', r"prices\.X\.usd_per_hour must be a number"),
        ('{"prices": {"X": {"usd_per_hour": -1}}}', r"prices\.X\.usd_per_hour must be a number"),
    ],
)
def test_a_bad_override_names_the_setting_and_the_entry(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PriceTableError, match=expected):
        PriceTable.load(path)


def test_steps_from_rows_epochs_and_the_global_batch() -> None:
    assert training_steps(1000, 3, 2, 4, 2, 1, -1) == 3 * 63  # ceil(1000 / 16) per epoch
    assert training_steps(1000, 3, 2, 4, 2, 1, 100) == 100  # max_steps caps it
    assert duration(0.5) == "30 min" and duration(5.2) == "5 h 12 min" and duration(76) == "3 d 4 h"


def deployed_record(instances: int, deleted_after: timedelta | None, note: str) -> RunRecord:
    up = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    timeline = {"deploying": (up - timedelta(minutes=15)).isoformat(), "deployed": up.isoformat()}
    state = RunState.DEPLOYED
    if deleted_after is not None:
        timeline["deleted"] = (up + deleted_after).isoformat()
        state = RunState.DELETED
    return RunRecord(
        run_id="demo-1234abcd",
        state=state,
        config_blob="demo.yaml",
        config_name="demo",
        created_at=up - timedelta(hours=5),
        updated_at=up,
        config=training_config(deployment={**CONFIG["deployment"], "instance_count": instances}),  # type: ignore[dict-item]
        endpoint_name="ep-demo",
        inference_instance_type="Standard_NC24ads_A100_v4",
        timeline=timeline,
        notes=[note] if note else [],
    )


def test_an_endpoint_up_shows_how_long_and_what_it_cost() -> None:
    record = deployed_record(2, None, "")
    now = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
    lines, info = endpoint_cost(record, PriceTable.load(), now)
    assert lines[0].startswith("endpoint up 10 h 30 min") and len(lines) == 1
    assert info is not None and info["usd_while_up"] == round(3.673 * 2 * 10.5, 2)


def test_idle_cleanup_saves_the_price_per_day_from_the_deletion_on() -> None:
    record = deployed_record(2, timedelta(hours=3), "endpoint deleted: idle: no request in the last 60 min")
    now = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # 48 h after the deletion at 11:00 on the 20th
    lines, info = endpoint_cost(record, PriceTable.load(), now)
    assert info is not None
    assert info["up_hours"] == 3 and info["usd_while_up"] == round(3.673 * 2 * 3, 2)
    assert info["idle_saved_usd_per_day"] == round(
        endpoint_cost_per_day(PriceTable.load().get("Standard_NC24ads_A100_v4"), 2), 2
    )  # type: ignore[arg-type]
    assert info["idle_saved_usd_so_far"] == round(3.673 * 2 * 48, 2)
    assert lines[0].startswith("endpoint was up 3 h 0 min") and "idle cleanup saves $176.30 per day" in lines[1]


def test_a_deletion_that_was_not_idle_cleanup_claims_no_saving() -> None:
    record = deployed_record(1, timedelta(hours=1), "endpoint deleted: unhealthy for 30 min (3 failed probes in a row)")
    lines, info = endpoint_cost(record, PriceTable.load(), datetime(2026, 11, 21, tzinfo=UTC))
    assert info is not None and "idle_saved_usd_per_day" not in info and len(lines) == 1


def test_no_price_says_so_instead_of_a_number() -> None:
    record = deployed_record(1, None, "")
    record.inference_instance_type = "Standard_ND96amsr_A100_v4"
    lines, _ = endpoint_cost(record, PriceTable.load(), datetime(2026, 11, 21, tzinfo=UTC))
    assert lines[0].endswith("Standard_ND96amsr_A100_v4: no price on record")
