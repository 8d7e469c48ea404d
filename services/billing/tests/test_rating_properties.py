"""Properties of rating that hold for every tariff and call (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from ringwise_billing.rating.money import MICROS, display, from_micros, to_micros
from ringwise_billing.rating.rater import (
    CallToRate,
    Direction,
    Outcome,
    affordable_seconds,
    rate_call,
)
from ringwise_billing.rating.tariff import Increment, Rate, TariffBook, TariffVersion

increments = st.builds(Increment, st.integers(1, 3600), st.integers(1, 3600))
amounts = st.decimals(min_value=0, max_value=100, places=6, allow_nan=False, allow_infinity=False)
prefixes = st.text("0123456789", min_size=1, max_size=6)
rates = st.builds(
    Rate,
    prefix=prefixes,
    per_minute=amounts,
    connection_fee=amounts,
    increment=increments,
    minimum_s=st.integers(0, 3600),
)
durations = st.integers(1, 6 * 3600)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@given(increments, durations)
def test_increments_charge_whole_blocks_never_less_than_the_call(
    increment: Increment, seconds: int
) -> None:
    billed = increment.billed_seconds(seconds)
    assert billed >= seconds
    assert billed >= increment.first_s
    if billed > increment.first_s:
        assert (billed - increment.first_s) % increment.next_s == 0
        assert billed - seconds < increment.next_s  # never a whole extra block
    else:
        assert seconds <= increment.first_s


@given(rates, durations)
def test_the_minimum_duration_is_always_charged(rate: Rate, seconds: int) -> None:
    assert rate.billed_seconds(seconds) >= rate.minimum_s
    assert rate.billed_seconds(seconds) == rate.billed_seconds(max(seconds, rate.minimum_s))


@given(rates, durations)
def test_money_is_never_lost_to_rounding(rate: Rate, seconds: int) -> None:
    """The charge is the exact price rounded up to one micro-unit: never below the exact
    price (the operator loses nothing), never a whole micro-unit above it."""
    billed = rate.billed_seconds(seconds)
    exact = rate.connection_fee + rate.per_minute * Decimal(billed) / Decimal(60)
    charged = from_micros(rate.cost_micros(seconds))
    assert charged >= exact
    assert charged - exact < Decimal(1) / MICROS


@given(st.lists(st.tuples(rates, durations), min_size=1, max_size=30))
def test_a_sum_of_charges_is_exact(calls: list[tuple[Rate, int]]) -> None:
    micros = [rate.cost_micros(seconds) for rate, seconds in calls]
    assert to_micros(sum((from_micros(m) for m in micros), Decimal(0))) == sum(micros)


@given(rates, durations, durations)
def test_a_longer_call_never_costs_less(rate: Rate, a: int, b: int) -> None:
    short, long = sorted((a, b))
    assert rate.cost_micros(short) <= rate.cost_micros(long)


@given(st.lists(prefixes, min_size=1, max_size=20, unique=True), st.text("0123456789", max_size=12))
def test_the_longest_matching_prefix_wins(prefix_list: list[str], number: str) -> None:
    version = TariffVersion("v", T0, "EUR", tuple(Rate(p, Decimal("0.01")) for p in prefix_list))
    matched = version.outbound_rate("+" + number)
    candidates = [p for p in prefix_list if number.startswith(p)]
    if not candidates:
        assert matched is None
    else:
        assert matched is not None
        assert matched.prefix == max(candidates, key=len)


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=10, unique=True), st.integers(-5, 1100))
def test_the_version_in_force_when_the_call_started_rates_it(
    start_days: list[int], call_day: int
) -> None:
    versions = [
        TariffVersion(f"v{d}", T0 + timedelta(days=d), "EUR", (Rate("1", Decimal(d)),))
        for d in start_days
    ]
    started = T0 + timedelta(days=call_day, hours=1)
    charge = rate_call(
        CallToRate("c", "t", Direction.OUTBOUND, "a", "+1555", started, 1000), TariffBook(versions)
    )
    earlier = [d for d in start_days if d <= call_day]
    if not earlier:
        assert charge.outcome is Outcome.NO_TARIFF
    else:
        assert charge.tariff_version == f"v{max(earlier)}"


@given(rates, st.integers(0, 10 * MICROS), st.integers(1, 4 * 3600))
def test_the_affordable_duration_is_the_longest_the_budget_covers(
    rate: Rate, budget: int, cap: int
) -> None:
    seconds = affordable_seconds(rate, budget, cap)
    assert 0 <= seconds <= cap
    if seconds:
        assert rate.cost_micros(seconds) <= budget
    if seconds < cap:
        assert rate.cost_micros(seconds + 1) > budget


@given(st.integers(-(10**12), 10**12))
def test_display_rounds_for_people_and_the_ledger_keeps_micros(micros: int) -> None:
    assert to_micros(from_micros(micros)) == micros
    assert abs(Decimal(display(micros)) - from_micros(micros)) <= Decimal("0.005")
