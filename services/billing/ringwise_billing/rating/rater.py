"""The rater: one call in, one charge out. Pure and deterministic: the same call and tariff
book always give the same charge, which is what makes booking it exactly once possible."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ringwise_billing.rating.tariff import Rate, TariffBook


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class Outcome(StrEnum):
    RATED = "rated"  # priced by a rate (may still be 0 for a free rate)
    INTERNAL = "internal"  # between users of one tenant: free
    INBOUND_FREE = "inbound_free"  # inbound and no inbound rate for the dialled number
    NOT_ANSWERED = "not_answered"
    NO_TARIFF = "no_tariff"  # no tariff version in force when the call started
    NO_RATE = "no_rate"  # the version has no rate for the destination (re-rate later)


@dataclass(frozen=True, slots=True)
class CallToRate:
    call_id: str
    tenant_id: str
    direction: Direction
    from_number: str
    to_number: str
    started_at: datetime
    billable_ms: int  # 0 when never answered


@dataclass(frozen=True, slots=True)
class Charge:
    call_id: str
    tenant_id: str
    outcome: Outcome
    amount_micros: int = 0
    currency: str = ""
    seconds: int = 0  # the call's duration, whole seconds rounded up
    billed_seconds: int = 0  # after minimum and increments
    prefix: str = ""
    tariff_version: str = ""
    tariff_revision: int = 0


def call_seconds(billable_ms: int) -> int:
    """A started second counts: 61.2 s of talk is 62 s (then increments apply)."""
    return -(-billable_ms // 1000)


def rate_call(call: CallToRate, book: TariffBook) -> Charge:
    if call.direction is Direction.INTERNAL:
        return Charge(call.call_id, call.tenant_id, Outcome.INTERNAL)
    seconds = call_seconds(call.billable_ms)
    if seconds <= 0:
        return Charge(call.call_id, call.tenant_id, Outcome.NOT_ANSWERED)
    version = book.in_force(call.started_at)
    if version is None:
        return Charge(call.call_id, call.tenant_id, Outcome.NO_TARIFF, seconds=seconds)
    rate: Rate | None
    if call.direction is Direction.INBOUND:
        rate = version.inbound_rate(call.to_number)
        if rate is None:
            return Charge(
                call.call_id,
                call.tenant_id,
                Outcome.INBOUND_FREE,
                currency=version.currency,
                seconds=seconds,
                tariff_version=version.version_id,
                tariff_revision=version.revision,
            )
    else:
        rate = version.outbound_rate(call.to_number)
        if rate is None:
            return Charge(
                call.call_id,
                call.tenant_id,
                Outcome.NO_RATE,
                currency=version.currency,
                seconds=seconds,
                tariff_version=version.version_id,
                tariff_revision=version.revision,
            )
    return Charge(
        call.call_id,
        call.tenant_id,
        Outcome.RATED,
        amount_micros=rate.cost_micros(seconds),
        currency=version.currency,
        seconds=seconds,
        billed_seconds=rate.billed_seconds(seconds),
        prefix=rate.prefix,
        tariff_version=version.version_id,
        tariff_revision=version.revision,
    )


def affordable_seconds(rate: Rate, budget_micros: int, cap_s: int) -> int:
    """The longest call (whole seconds, at most cap_s) whose price fits the budget; 0 when
    not even the first second does. Price is non-decreasing in duration: binary search."""
    if cap_s <= 0 or rate.cost_micros(1) > budget_micros:
        return 0
    if rate.cost_micros(cap_s) <= budget_micros:
        return cap_s
    low, high = 1, cap_s  # cost(low) fits, cost(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        if rate.cost_micros(middle) <= budget_micros:
            low = middle
        else:
            high = middle
    return low
