"""Credit authorisation on real Mongo-wire and NATS: reservations never overspend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from ringwise.billing.v1 import credit_pb2
from ringwise.events.v1 import call_pb2
from ringwise_billing.accounts.credit import (
    PROMPT_BLOCKED,
    PROMPT_INSUFFICIENT,
    PROMPT_NOT_ALLOWED,
    CreditControl,
    CreditPolicy,
)
from ringwise_billing.accounts.store import ACTIVE, reserved_micros
from ringwise_billing.ledger.store import TOPUP
from ringwise_billing.rating.example import JAN, example_versions
from ringwise_billing.wiring import Billing
from ringwise_dev.infra import Infra
from ringwise_kit import bus, subjects
from ringwise_kit.events import event_header, to_timestamp

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Reply = credit_pb2.AuthoriseReply
NOW = JAN + timedelta(hours=1)


async def prepaid(billing: Billing, tenant: str, balance: str, *, activate: bool = True) -> None:
    for version in example_versions():
        await billing.tariffs.put(tenant, version)
    micros = int(float(balance) * 1_000_000)
    if micros:
        await billing.ledger.append_once(
            [
                {
                    "_id": f"topup:{tenant}-1",
                    "tenant_id": tenant,
                    "kind": TOPUP,
                    "amount_micros": micros,
                    "currency": "EUR",
                    "occurred_at": JAN,
                    "booked_at": JAN,
                    "applied": False,
                }
            ]
        )
        await billing.accounts.apply_pending()
    if activate:

        def activated(doc: dict[str, object]) -> dict[str, object]:
            return {**doc, "status": ACTIVE, "currency": "EUR"}

        await billing.accounts.change(tenant, activated)


def outbound(
    call_id: str, to: str = "+441134960000", seconds: int = 0, tenant: str = "acme"
) -> credit_pb2.AuthoriseRequest:
    return credit_pb2.AuthoriseRequest(
        tenant_id=tenant,
        call_id=call_id,
        direction=call_pb2.DIRECTION_OUTBOUND,
        to_number=to,
        requested_seconds=seconds,
    )


async def test_fifty_simultaneous_authorisations_never_overspend_a_small_balance(
    billing: Billing,
) -> None:
    # 1.00 EUR; +44 costs 0.02 per started minute (60/60): 50 minutes of talk in all.
    await prepaid(billing, "acme", "1.00")
    credit = CreditControl(billing.accounts, billing.tariffs)
    replies = await asyncio.gather(
        *(credit.authorise(outbound(f"p{i}", seconds=240), NOW) for i in range(50))
    )
    allowed = [r for r in replies if r.decision == Reply.DECISION_ALLOW]
    denied = [r for r in replies if r.decision == Reply.DECISION_DENY]
    # Each call reserves 4 minutes (0.08): 12 fit (0.96); the 13th gets the 2 minutes left.
    assert sorted(r.max_duration_s for r in allowed) == [120] + [240] * 12
    assert {r.reason for r in denied} == {Reply.REASON_INSUFFICIENT_FUNDS}
    assert all(r.prompt == PROMPT_INSUFFICIENT for r in denied)
    account = await billing.accounts.get("acme")
    assert account is not None
    assert reserved_micros(account, NOW) == 1_000_000 == account["balance_micros"]
    assert len(account["reservations"]) == 13


async def test_authorisation_outcomes(billing: Billing) -> None:
    await prepaid(billing, "acme", "0.50")
    await prepaid(billing, "empty", "0")
    await prepaid(billing, "dormant", "5", activate=False)
    credit = CreditControl(billing.accounts, billing.tariffs, CreditPolicy(max_call_s=3600))
    mobile = await credit.authorise(outbound("m1", "+447700900123"), NOW)
    # 0.50 at 0.015 + 0.09/min (30/6): 0.485 buys 323.33 s -> 318 s (30 + 48 x 6)
    assert (mobile.decision, mobile.reason, mobile.max_duration_s, mobile.warn_at_s) == (
        Reply.DECISION_ALLOW,
        Reply.REASON_FUNDS_RESERVED,
        318,
        288,
    )
    assert (mobile.reserved_amount, mobile.currency, mobile.available_amount) == (
        "0.492000",
        "EUR",
        "0.008000",
    )
    assert await credit.authorise(outbound("m1", "+447700900123"), NOW) == mobile  # idempotent
    poor = await credit.authorise(outbound("m2", "+447700900123"), NOW)
    assert (poor.decision, poor.reason) == (Reply.DECISION_DENY, Reply.REASON_INSUFFICIENT_FUNDS)
    # Giving the first reservation back makes room again.
    assert (
        await credit.release(credit_pb2.ReleaseRequest(tenant_id="acme", call_id="m1"))
    ).released
    assert not (
        await credit.release(credit_pb2.ReleaseRequest(tenant_id="acme", call_id="m1"))
    ).released
    again = await credit.authorise(outbound("m2", "+447700900123"), NOW)
    assert again.decision == Reply.DECISION_ALLOW
    # An expired reservation stops counting.
    later = NOW + timedelta(seconds=318 + 121)
    assert (await credit.authorise(outbound("m3", "+447700900123"), later)).max_duration_s == 318

    cases = [
        (outbound("x1", "+81312345678"), Reply.REASON_NO_RATE, PROMPT_NOT_ALLOWED),
        (outbound("x2", tenant="empty"), Reply.REASON_BLOCKED_UNPAID, PROMPT_BLOCKED),
        (outbound("x3", tenant="dormant"), Reply.REASON_ACCOUNT_INACTIVE, PROMPT_BLOCKED),
    ]
    for request, reason, prompt in cases:
        reply = await credit.authorise(request, NOW)
        assert (reply.decision, reply.reason, reply.prompt) == (Reply.DECISION_DENY, reason, prompt)
    # Inbound keeps working when blocked; no tariff in force refuses outbound.
    inbound = credit_pb2.AuthoriseRequest(
        tenant_id="empty", call_id="in1", direction=call_pb2.DIRECTION_INBOUND
    )
    reply = await credit.authorise(inbound, NOW)
    assert (reply.decision, reply.reason, reply.max_duration_s) == (
        Reply.DECISION_ALLOW,
        Reply.REASON_NOT_CHARGEABLE,
        0,
    )
    before = await credit.authorise(outbound("x4"), datetime(2025, 6, 1, tzinfo=UTC))
    assert before.reason == Reply.REASON_NO_TARIFF


async def test_the_rated_call_settles_its_reservation(billing: Billing) -> None:
    await prepaid(billing, "acme", "1.00")
    credit = CreditControl(billing.accounts, billing.tariffs)
    now = datetime.now(UTC)
    reply = await credit.authorise(outbound("s1", seconds=600), now)
    assert reply.reserved_amount == "0.200000"
    talk_ms = 61_000
    event = call_pb2.CallEnded(
        header=event_header("acme", "s1", subjects.CALL_ENDED, now),
        direction=call_pb2.DIRECTION_OUTBOUND,
        to_number="+441134960000",
        started_at=to_timestamp(now - timedelta(seconds=70)),
        billable_ms=talk_ms,
        disposition=call_pb2.DISPOSITION_ANSWERED,
    )
    await billing.booker.book([event])
    account = await billing.accounts.get("acme")
    assert account is not None
    assert account["reservations"] == []
    assert account["balance_micros"] == 1_000_000 - 40_000


async def test_routing_asks_over_nats_request_reply(infra: Infra, billing: Billing) -> None:
    await prepaid(billing, "acme", "1.00")
    credit = CreditControl(billing.accounts, billing.tariffs)
    nc = await bus.connect(infra.endpoints.nats_url, "credit-test")
    # A subject of this test's own, so a running billing process does not answer it.
    subject = subjects.BILLING_AUTHORISE + ".test"
    sub = await bus.serve(nc, subject, "billing", credit_pb2.AuthoriseRequest, credit.authorise)
    try:
        reply = await bus.request(nc, subject, outbound("n1", seconds=60), Reply, timeout_s=5)
        assert (reply.decision, reply.max_duration_s) == (Reply.DECISION_ALLOW, 60)
        with pytest.raises(bus.RemoteError):
            await bus.request(nc, subject, outbound(""), Reply, timeout_s=5)
    finally:
        await sub.unsubscribe()
        await nc.drain()


async def test_a_long_call_asks_for_more_time_one_quota_at_a_time(billing: Billing) -> None:
    # 0.10 EUR; +44 costs 0.02 per started minute; quota 2 minutes.
    await prepaid(billing, "acme", "0.10")
    credit = CreditControl(billing.accounts, billing.tariffs, CreditPolicy(quota_s=120))
    first = await credit.authorise(outbound("a1"), NOW)
    second = await credit.authorise(outbound("a2"), NOW)
    assert (first.max_duration_s, first.warn_at_s, second.max_duration_s) == (120, 90, 120)

    def more(call_id: str) -> credit_pb2.AuthoriseRequest:
        request = outbound(call_id)
        request.extend = True
        return request

    later = NOW + timedelta(seconds=90)
    extended = await credit.authorise(more("a1"), later)
    # 0.10 - a2's 0.04 leaves a1 0.06 in all: 3 minutes, not the 4 a full quota would give.
    assert (extended.decision, extended.max_duration_s, extended.reserved_amount) == (
        Reply.DECISION_ALLOW,
        180,
        "0.060000",
    )
    refused = await credit.authorise(more("a1"), later)
    assert (refused.decision, refused.reason, refused.max_duration_s) == (
        Reply.DECISION_DENY,
        Reply.REASON_INSUFFICIENT_FUNDS,
        180,  # the call keeps what it was granted and is cut then
    )
    account = await billing.accounts.get("acme")
    assert account is not None
    assert reserved_micros(account, later) == 100_000 == account["balance_micros"]
    # The reservation outlives the whole granted time, not only the first quota.
    assert reserved_micros(account, NOW + timedelta(seconds=180 + 119)) == 60_000
    # A call whose reservation is gone asks afresh; nothing is left.
    unknown = await credit.authorise(more("a3"), later)
    assert unknown.reason == Reply.REASON_INSUFFICIENT_FUNDS
