"""Exact money: Decimal amounts, booked in whole micro-units of the currency.

Rates and fees are Decimals with at most MAX_PLACES places. A charge is computed exactly and
rounded *up* to one micro-unit (1e-6), so the operator never loses money to rounding and a
customer never pays more than one micro-unit above the exact price per call. Ledger sums are
integer sums of micro-units: adding charges never rounds.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

MICROS = 1_000_000
MICRO = Decimal("0.000001")
MAX_PLACES = 6
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


def parse_amount(value: object, *, allow_negative: bool = False) -> Decimal:
    """A JSON amount ("0.0125" or a number) as a Decimal with at most 6 places."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise MoneyError('an amount is a decimal string such as "0.0125"')
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise MoneyError(f"{value!r} is not a decimal amount") from None
    if not amount.is_finite():
        raise MoneyError("an amount must be finite")
    try:
        quantized = amount.quantize(MICRO, rounding=ROUND_FLOOR)
    except InvalidOperation:  # e.g. 1E+500: more digits than the context holds
        raise MoneyError(f"{value!r} is too large for an amount") from None
    if amount != quantized:
        raise MoneyError(f"at most {MAX_PLACES} decimal places")
    if amount < 0 and not allow_negative:
        raise MoneyError("an amount must not be negative")
    return amount


def parse_currency(value: object) -> str:
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise MoneyError("a currency is an ISO 4217 code such as EUR")
    return value


def to_micros(amount: Decimal) -> int:
    """Exact when amount has at most 6 places (parse_amount guarantees it)."""
    return int(amount.scaleb(6).to_integral_value(rounding=ROUND_CEILING))


def ceil_micros(exact: Decimal) -> int:
    """An exact (possibly longer) amount, rounded up to whole micro-units."""
    return int(exact.scaleb(6).to_integral_value(rounding=ROUND_CEILING))


def from_micros(micros: int) -> Decimal:
    return Decimal(micros).scaleb(-6).quantize(MICRO)


def display(micros: int, places: int = 2) -> str:
    """For people (dashboards, invoices): rounded half-even to `places`; the ledger keeps micros."""
    return str(from_micros(micros).quantize(Decimal(1).scaleb(-places)))
