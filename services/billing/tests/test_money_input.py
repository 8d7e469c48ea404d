"""Amounts from API bodies: anything that is not a plain money amount is a MoneyError (a 422),
never an exception that escapes (the API fuzz test found 1E+500 escaping as a 500)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from ringwise_billing.rating.money import MoneyError, parse_amount


@pytest.mark.parametrize(
    "raw", ["1E+500", "9" * 60, "NaN", "Infinity", "-1", "0.0000001", "abc", True, None, [1]]
)
def test_what_cannot_be_an_amount_is_refused_as_such(raw: object) -> None:
    with pytest.raises(MoneyError):
        parse_amount(raw)


@pytest.mark.parametrize(
    ("raw", "amount"), [("0.0125", Decimal("0.0125")), (2, Decimal(2)), ("1E+3", Decimal(1000))]
)
def test_plain_amounts_are_exact_decimals(raw: object, amount: Decimal) -> None:
    assert parse_amount(raw) == amount
