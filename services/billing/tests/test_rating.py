"""The worked tariff example of docs/billing.md, one row per behaviour, plus input checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ringwise_billing.rating.example import AUG, JAN, STANDARD_2026, example_book
from ringwise_billing.rating.rater import CallToRate, Direction, Outcome, rate_call
from ringwise_billing.rating.tariff import TariffBook, TariffError, parse_version

BOOK = example_book()
IN, OUT, INT = Direction.INBOUND, Direction.OUTBOUND, Direction.INTERNAL

# direction, dialled, started, billable ms -> outcome, billed s, prefix, amount (EUR), version
ROWS = [
    (OUT, "+447700900123", JAN, 61_200, Outcome.RATED, 66, "447", "0.114000", "std-2026"),
    (OUT, "+442079460000", JAN, 10_000, Outcome.RATED, 10, "4420", "0.002500", "std-2026"),
    (OUT, "+441134960000", JAN, 61_000, Outcome.RATED, 120, "44", "0.040000", "std-2026"),
    (OUT, "+441134960000", JAN, 60_000, Outcome.RATED, 60, "44", "0.020000", "std-2026"),
    (OUT, "+12125550100", JAN, 5_000, Outcome.RATED, 30, "1", "0.005000", "std-2026"),
    (OUT, "+12125550100", JAN, 30_001, Outcome.RATED, 31, "1", "0.005167", "std-2026"),
    (OUT, "+37069912345", JAN, 1, Outcome.RATED, 60, "3706", "1.750000", "std-2026"),
    (IN, "+448001234567", JAN, 120_000, Outcome.RATED, 120, "44800", "0.060000", "std-2026"),
    (IN, "+441134960001", JAN, 120_000, Outcome.INBOUND_FREE, 0, "", "0.000000", "std-2026"),
    (INT, "+441134960000", JAN, 120_000, Outcome.INTERNAL, 0, "", "0.000000", ""),
    (OUT, "+441134960000", JAN, 0, Outcome.NOT_ANSWERED, 0, "", "0.000000", ""),
    (OUT, "+81312345678", JAN, 30_000, Outcome.NO_RATE, 0, "", "0.000000", "std-2026"),
    (OUT, "+447700900123", AUG, 61_200, Outcome.RATED, 66, "447", "0.092000", "summer-2026"),
    (
        OUT,
        "+447700900123",
        datetime(2025, 12, 31, 23, 59, tzinfo=UTC),
        61_200,
        Outcome.NO_TARIFF,
        0,
        "",
        "0.000000",
        "",
    ),
    # The version in force when the call *started* rates it, even if it ends later.
    (
        OUT,
        "+447700900123",
        datetime(2026, 6, 30, 23, 59, 30, tzinfo=UTC),
        61_200,
        Outcome.RATED,
        66,
        "447",
        "0.114000",
        "std-2026",
    ),
]


@pytest.mark.parametrize(
    ("direction", "dialled", "started", "ms", "outcome", "billed", "prefix", "amount", "version"),
    ROWS,
)
def test_worked_example(
    direction: Direction,
    dialled: str,
    started: datetime,
    ms: int,
    outcome: Outcome,
    billed: int,
    prefix: str,
    amount: str,
    version: str,
) -> None:
    call = CallToRate("c1", "acme", direction, "+15550100", dialled, started, ms)
    charge = rate_call(call, BOOK)
    assert charge.outcome is outcome
    assert charge.billed_seconds == billed
    assert charge.prefix == prefix
    assert f"{charge.amount_micros / 1_000_000:.6f}" == amount
    assert charge.tariff_version == version


def test_bad_tariff_input_names_every_bad_field() -> None:
    bad = {
        "version_id": "has space",
        "effective_from": "2026-01-01T00:00:00",  # no time zone
        "currency": "euro",
        "outbound": [
            {"prefix": "44a", "per_minute": "0.01"},
            {"prefix": "+44", "per_minute": "-1"},
            {"prefix": "+45", "per_minute": "0.0000001"},
            {"prefix": "+46", "per_minute": "0.01", "increment": "0/60"},
            {"prefix": "+47", "per_minute": "0.01", "minimum_s": -1},
            {"prefix": "+48", "per_minute": "0.01"},
            {"prefix": "48", "per_minute": "0.02"},
        ],
    }
    with pytest.raises(TariffError) as caught:
        parse_version(bad)
    fields = {e["field"] for e in caught.value.errors}
    assert fields == {
        "/version_id",
        "/effective_from",
        "/currency",
        "/outbound/0/prefix",
        "/outbound/1/per_minute",
        "/outbound/2/per_minute",
        "/outbound/3/increment",
        "/outbound/4/minimum_s",
        "/outbound/6/prefix",
    }


def test_a_correction_is_a_new_revision_and_the_book_keeps_the_latest() -> None:
    corrected = {**STANDARD_2026, "outbound": [{"prefix": "+44", "per_minute": "0.0100"}]}
    book = TariffBook([parse_version(STANDARD_2026), parse_version(corrected, revision=2)])
    version = book.in_force(JAN)
    assert version is not None and version.revision == 2
    assert [r.prefix for r in version.outbound] == ["44"]
