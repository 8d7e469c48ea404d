"""Booking rated calls in the ledger and the balance, exactly once, on real Mongo-wire."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from ringwise.events.v1 import call_pb2
from ringwise_billing.cdrs.store import cdr_document
from ringwise_billing.ledger.booking import call_to_rate
from ringwise_billing.ledger.rerate import rerate
from ringwise_billing.ledger.store import call_entry_id, charge_entry
from ringwise_billing.rating.example import JAN, STANDARD_2026, example_versions
from ringwise_billing.rating.rater import rate_call
from ringwise_billing.rating.tariff import parse_version
from ringwise_billing.wiring import Billing
from ringwise_kit import subjects
from ringwise_kit.events import event_header, to_timestamp

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def ended(
    call_id: str,
    to_number: str = "+447700900123",
    talk_ms: int = 61_200,
    started: datetime = JAN,
    tenant: str = "acme",
    direction: int = call_pb2.DIRECTION_OUTBOUND,
) -> call_pb2.CallEnded:
    answered = started + timedelta(seconds=3)
    end = answered + timedelta(milliseconds=talk_ms)
    return call_pb2.CallEnded(
        header=event_header(tenant, call_id, subjects.CALL_ENDED, end),
        direction=direction,  # type: ignore[arg-type]
        from_number="+15550100",
        to_number=to_number,
        started_at=to_timestamp(started),
        answered_at=to_timestamp(answered),
        ended_at=to_timestamp(end),
        billable_seconds=talk_ms // 1000,
        billable_ms=talk_ms,
        disposition=call_pb2.DISPOSITION_ANSWERED if talk_ms else call_pb2.DISPOSITION_NO_ANSWER,
    )


async def with_tariffs(billing: Billing, tenant: str = "acme") -> None:
    for version in example_versions():
        await billing.tariffs.put(tenant, version)


async def test_a_call_is_booked_once_however_often_it_comes(billing: Billing) -> None:
    await with_tariffs(billing)
    events = [ended("c1"), ended("c2", "+442079460000", 10_000), ended("c3", talk_ms=0)]
    assert await billing.booker.book(events) == {"c1", "c2", "c3"}
    assert await billing.booker.book([*events, events[0]]) == set()
    entries = {e["_id"]: e for e in await billing.ledger.of_tenant("acme")}
    assert {k: v["amount_micros"] for k, v in entries.items()} == {
        "call:c1": -114_000,
        "call:c2": -2_500,
        "call:c3": 0,
    }
    assert entries["call:c3"]["outcome"] == "not_answered"
    assert all(e["applied"] for e in entries.values())
    account = await billing.accounts.get("acme")
    assert account is not None
    assert (account["balance_micros"], account["currency"]) == (-116_500, "EUR")


async def test_a_crash_between_booking_and_balance_is_repaired_without_a_double_charge(
    billing: Billing,
) -> None:
    await with_tariffs(billing)
    event = ended("k1")
    charge = rate_call(call_to_rate(event), await billing.tariffs.book("acme"))
    # Died after the append, before the balance: the redelivery applies it.
    await billing.ledger.append_once([charge_entry(charge, JAN, JAN)])
    await billing.booker.book([event])
    # Died after the balance, before marking the entry applied: nothing applied twice.
    event2 = ended("k2")
    charge2 = rate_call(call_to_rate(event2), await billing.tariffs.book("acme"))
    await billing.ledger.append_once([charge_entry(charge2, JAN, JAN)])
    [entry] = await billing.ledger.unapplied([call_entry_id("k2")])
    await billing.accounts._apply("acme", [entry])
    assert await billing.accounts.apply_pending() == 0  # start-up recovery: only marks it
    await billing.booker.book([event2])
    account = await billing.accounts.get("acme")
    assert account is not None
    assert account["balance_micros"] == -228_000
    assert await billing.ledger.unapplied() == []


async def test_re_rating_after_a_tariff_correction_books_adjustments_not_edits(
    billing: Billing,
) -> None:
    await with_tariffs(billing)
    events = [ended("r1"), ended("r2", "+441134960000", 61_000), ended("r3", "+81312345678")]
    for event in events:
        await billing.cdrs.insert_once(cdr_document(event, JAN))
    await billing.booker.book(events)
    before = {e["_id"]: dict(e) for e in await billing.ledger.of_tenant("acme")}
    # The correction: UK mobiles were mispriced, and Japan was missing.
    corrected = {
        **STANDARD_2026,
        "outbound": [
            *(r for r in STANDARD_2026["outbound"] if r["prefix"] != "+447"),
            {"prefix": "+447", "per_minute": "0.0600", "increment": "30/6"},
            {"prefix": "+81", "per_minute": "0.1000", "increment": "60/60"},
        ],
    }
    await billing.tariffs.put("acme", parse_version(corrected, revision=2))
    since, until = JAN - timedelta(days=1), JAN + timedelta(days=1)
    first = await rerate(billing.cdrs, billing.booker, "acme", since, until, "fix-1", "UK mobile")
    # r1: 0.114 -> 0.066 (refund 0.048); r2 unchanged; r3: 0 -> 0.2 (61.2 s at 60/60 is 2 min)
    assert (first.calls, first.adjusted, first.adjustment_micros) == (3, 2, 48_000 - 200_000)
    again = await rerate(billing.cdrs, billing.booker, "acme", since, until, "fix-1")
    later = await rerate(billing.cdrs, billing.booker, "acme", since, until, "fix-2")
    assert again.adjusted == later.adjusted == 0
    after = {e["_id"]: e for e in await billing.ledger.of_tenant("acme")}
    for entry_id, entry in before.items():  # nothing edited
        assert {k: v for k, v in after[entry_id].items() if k != "applied"} == {
            k: v for k, v in entry.items() if k != "applied"
        }
    assert after["adj:r1:fix-1"]["amount_micros"] == 48_000
    assert after["adj:r3:fix-1"]["amount_micros"] == -200_000
    account = await billing.accounts.get("acme")
    assert account is not None
    assert account["balance_micros"] == sum(e["amount_micros"] for e in after.values())
    assert account["balance_micros"] == -(66_000 + 40_000 + 200_000)


async def test_inbound_and_internal_calls_and_unknown_tenants(billing: Billing) -> None:
    await with_tariffs(billing)
    events = [
        ended("i1", "+448001234567", 120_000, direction=call_pb2.DIRECTION_INBOUND),
        ended("i2", "+441134960001", 120_000, direction=call_pb2.DIRECTION_INBOUND),
        ended("i3", "+441134960001", 120_000, direction=call_pb2.DIRECTION_INTERNAL),
        ended("i4", tenant=""),  # an unassigned number: stored as a CDR, nobody to charge
        ended("i5", tenant="nobody"),  # a tenant without tariffs: booked as no_tariff
    ]
    assert await billing.booker.book(events) == {"i1", "i2", "i3", "i5"}
    outcomes = {
        e["call_id"]: (e["outcome"], e["amount_micros"])
        for tenant in ("acme", "nobody")
        for e in await billing.ledger.of_tenant(tenant)
    }
    assert outcomes == {
        "i1": ("rated", -60_000),
        "i2": ("inbound_free", 0),
        "i3": ("internal", 0),
        "i5": ("no_tariff", 0),
    }
