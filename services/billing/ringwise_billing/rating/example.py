"""The worked tariff example of docs/billing.md (tests, the benchmark and the docs share it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ringwise_billing.rating.tariff import TariffBook, TariffVersion, parse_version

STANDARD_OUTBOUND: list[dict[str, Any]] = [
    {"prefix": "+44", "per_minute": "0.0200", "increment": "60/60"},
    {"prefix": "+447", "per_minute": "0.0900", "connection_fee": "0.0150", "increment": "30/6"},
    {"prefix": "+4420", "per_minute": "0.0150", "increment": "1/1"},
    {"prefix": "+1", "per_minute": "0.0100", "increment": "1/1", "minimum_s": 30},
    {"prefix": "+3706", "per_minute": "1.2500", "connection_fee": "0.5000"},
]
STANDARD_2026: dict[str, Any] = {
    "version_id": "std-2026",
    "name": "Acme standard 2026",
    "effective_from": "2026-01-01T00:00:00Z",
    "currency": "EUR",
    "outbound": STANDARD_OUTBOUND,
    "inbound": [{"prefix": "+44800", "per_minute": "0.0300", "increment": "60/60"}],
}
SUMMER_2026: dict[str, Any] = {
    **STANDARD_2026,
    "version_id": "summer-2026",
    "name": "Acme summer 2026: cheaper UK mobiles",
    "effective_from": "2026-07-01T00:00:00+00:00",
    "outbound": [
        {**rate, "per_minute": "0.0700"} if rate["prefix"] == "+447" else rate
        for rate in STANDARD_OUTBOUND
    ],
}


def example_versions() -> list[TariffVersion]:
    return [parse_version(STANDARD_2026), parse_version(SUMMER_2026)]


def example_book() -> TariffBook:
    return TariffBook(example_versions())


JAN = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
AUG = datetime(2026, 8, 3, 10, 0, tzinfo=UTC)
