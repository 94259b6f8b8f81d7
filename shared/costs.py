"""Cost in view: VM prices from a shipped, dated table (shared/prices.json), and the arithmetic on them.

Every price carries its source URL, region and date; a SKU without one is "no price on record", never a guess.
``AUTOPILOT_PRICE_TABLE`` names a JSON file of the same shape whose entries replace or add to the shipped ones
(your region, your negotiated prices). All figures are estimates at list price.

- training: nodes x the fine-tune SKU's hourly price x hours (hours from the user, or from steps x seconds per
  step; the app does not guess a throughput);
- endpoint: instances x the inference SKU's hourly price, per day (24 h: a managed endpoint cannot scale to zero);
- idle cleanup saved: the endpoint's price per day from the moment cleanup deleted it, and, so far, its hourly
  price x instances x the hours from deletion until now, i.e. what it would have cost had it kept running
  (nothing else stops an idle managed endpoint). An upper bound: someone might have deleted it by hand.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

SHIPPED_TABLE = Path(__file__).with_name("prices.json")
NO_PRICE = "no price on record"
HOURS_PER_DAY = 24


@dataclass(frozen=True)
class Price:
    sku: str
    usd_per_hour: float
    region: str
    as_of: str
    source: str

    def cite(self) -> str:
        return f"${self.usd_per_hour:,.4g}/h, {self.region}, as of {self.as_of} ({self.source})"


class PriceTableError(ValueError):
    """The override file is unreadable or malformed; the message names the setting and the entry."""


def _read(path: Path, what: str) -> dict[str, dict[str, Any]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PriceTableError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise PriceTableError(f"{what}: {path} is not JSON ({exc.msg} at line {exc.lineno})") from None
    prices = document.get("prices") if isinstance(document, dict) else None
    if not isinstance(prices, dict):
        raise PriceTableError(f'{what}: {path} needs a "prices" object of SKU -> {{"usd_per_hour", ...}}')
    for sku, entry in prices.items():
        value = entry.get("usd_per_hour") if isinstance(entry, dict) else "missing"
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise PriceTableError(f"{what}: prices.{sku}.usd_per_hour must be a number >= 0 or null, not {value!r}")
    return prices


class PriceTable:
    """SKU -> price, case-insensitively; the override's entries win over the shipped ones."""

    def __init__(self, entries: dict[str, dict[str, Any]]) -> None:
        self._entries = {sku.lower(): (sku, entry) for sku, entry in entries.items()}

    @classmethod
    def load(cls, override: str | Path | None = None) -> PriceTable:
        entries = dict(_read(SHIPPED_TABLE, "the shipped price table"))
        if override:
            entries.update(_read(Path(override), "AUTOPILOT_PRICE_TABLE"))
        return cls(entries)

    def get(self, sku: str | None) -> Price | None:
        found = self._entries.get((sku or "").lower())
        if found is None or found[1].get("usd_per_hour") is None:
            return None
        name, entry = found
        return Price(
            sku=name,
            usd_per_hour=float(entry["usd_per_hour"]),
            region=str(entry.get("region") or "region not given"),
            as_of=str(entry.get("as_of") or "undated"),
            source=str(entry.get("source") or "no source given"),
        )


def money(amount: float) -> str:
    return f"${amount:,.2f}"


def training_steps(rows: int, epochs: int, batch: int, accumulation: int, gpus: int, nodes: int, max_steps: int) -> int:
    """Optimizer steps of a run: rows x epochs over the global batch, or max_steps when it is set (> 0)."""
    per_epoch = math.ceil(rows / max(batch * accumulation * gpus * nodes, 1))
    steps = per_epoch * epochs
    return min(steps, max_steps) if max_steps > 0 else steps


def training_cost(price: Price, nodes: int, hours: float) -> float:
    return price.usd_per_hour * nodes * hours


def endpoint_cost_per_day(price: Price, instances: int) -> float:
    return price.usd_per_hour * instances * HOURS_PER_DAY


def hours_between(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0) / 3600


def duration(hours: float) -> str:
    """``3 d 4 h``, ``5 h 12 min`` or ``42 min``."""
    minutes = round(hours * 60)
    days, rest = divmod(minutes, 60 * 24)
    if days:
        return f"{days} d {rest // 60} h"
    if rest >= 60:
        return f"{rest // 60} h {rest % 60} min"
    return f"{rest} min"
