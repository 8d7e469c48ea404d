"""Monthly fees and number charges with a controllable clock, on real Mongo-wire."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from ringwise.api.v1 import api_pb2
from ringwise_billing import wiring
from ringwise_billing.accounts.payments import BankTransferProvider, TestProvider
from ringwise_billing.accounts.store import ACTIVE
from ringwise_billing.accounts.topups import TopUps
from ringwise_billing.fees.periods import due_periods, period_key
from ringwise_billing.fees.store import FeeError
from ringwise_billing.invoices.document import Party
from ringwise_billing.invoices.issue import Issuer, monthly_invoice
from ringwise_billing.wiring import Billing
from ringwise_kit.api import ApiCall

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

_dbs = itertools.count()
OPERATOR = api_pb2.Principal(subject_id="op", role=api_pb2.ROLE_OPERATOR_ADMIN)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def open_billing(mongo: AsyncMongoClient[dict[str, Any]], clock: Clock) -> Billing:
    billing = Billing.open(mongo, f"billing_fees_test_{next(_dbs)}", clock=clock)
    await billing.ensure_indexes()

    def activated(doc: dict[str, Any]) -> dict[str, Any]:
        return {**doc, "status": ACTIVE, "currency": "EUR"}

    await billing.accounts.change("acme", activated)
    return billing


async def test_due_periods_are_whole_months_from_start_until_the_end() -> None:
    start = datetime(2026, 11, 20, tzinfo=UTC)
    now = datetime(2027, 2, 3, tzinfo=UTC)
    assert [period_key(p) for p in due_periods(start, None, now)] == [
        "2026-11",
        "2026-12",
        "2027-01",
        "2027-02",
    ]
    ended = datetime(2027, 1, 1, tzinfo=UTC)  # ended as January began: January not owed
    assert [period_key(p) for p in due_periods(start, ended, now)] == ["2026-11", "2026-12"]
    assert list(due_periods(now + timedelta(days=1), None, now)) == []


async def fee_entries(billing: Billing) -> dict[str, int]:
    return {
        e["_id"]: e["amount_micros"] for e in await billing.ledger.of_tenant("acme", kinds=["fee"])
    }


async def test_monthly_fees_are_charged_exactly_once_per_period_and_caught_up(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    clock = Clock(datetime(2026, 11, 20, 12, tzinfo=UTC))
    billing = await open_billing(mongo, clock)
    fees = billing.fees
    await fees.subscribe("acme", "hpbx", "service", "Hosted PBX", 16_990_000, currency="EUR")
    await fees.subscribe(
        "acme",
        "user-alice",
        "user",
        "User alice",
        2_000_000,
        setup_micros=1_000_000,
        currency="EUR",
    )
    # The job runs often, and in two processes at once: November is charged once.
    results = await asyncio.gather(*(fees.run_once() for _ in range(4)))
    assert sum(r["charged"] for r in results) == 3
    assert await fee_entries(billing) == {
        "fee:acme:hpbx:2026-11": -16_990_000,
        "fee:acme:user-alice:2026-11": -2_000_000,
        "fee:acme:user-alice:setup": -1_000_000,
    }
    assert await fees.next_payment("acme") == {
        "date": "2026-12-01",
        "amount_micros": 18_990_000,
        "currency": "EUR",
    }
    # Billing was down from December to mid-February: the job catches up, once.
    clock.now = datetime(2027, 2, 15, tzinfo=UTC)
    await fees.end("acme", "user-alice")
    assert (await fees.run_once())["charged"] == 6
    assert (await fees.run_once())["charged"] == 0
    clock.advance(days=30)
    assert (await fees.run_once())["charged"] == 1  # March: the PBX only
    entries = await fee_entries(billing)
    assert sorted(k for k in entries if "user-alice" in k) == [
        "fee:acme:user-alice:2026-11",
        "fee:acme:user-alice:2026-12",
        "fee:acme:user-alice:2027-01",
        "fee:acme:user-alice:2027-02",
        "fee:acme:user-alice:setup",
    ]
    account = await billing.accounts.get("acme")
    assert account is not None
    assert account["balance_micros"] == sum(entries.values()) == -(5 * 16_990_000 + 9_000_000)
    with pytest.raises(FeeError):
        await fees.end("acme", "user-alice")


async def test_a_number_is_free_while_reserved_charged_when_active_and_stops_after_release(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    clock = Clock(datetime(2026, 11, 2, tzinfo=UTC))
    billing = await open_billing(mongo, clock)
    router = wiring.router(lambda: billing)

    async def api(operation: str, body: Any = None, **params: str) -> tuple[int, Any]:
        reply = await router.dispatch(
            ApiCall(
                operation=operation,
                principal=OPERATOR,
                path_params={"tenant_id": "acme", **params},
                body=json.dumps(body).encode() if body is not None else b"",
            )
        )
        return reply.status, json.loads(reply.body)

    status, number = await api(
        "reserveNumberCharge", {"number": "+442071234567", "monthly": "5.00", "setup": "10.00"}
    )
    assert (status, number["state"], number["fee_id"]) == (201, "reserved", "number-442071234567")
    assert (await api("reserveNumberCharge", {"number": "0207", "monthly": "x"}))[0] == 422
    assert (await api("reserveNumberCharge", {"number": "+442071234568", "monthly": "5"}))[0] == 201
    clock.advance(days=10)
    await billing.fees.run_once()
    assert await fee_entries(billing) == {}  # reserved numbers cost nothing
    status, active = await api("activateNumberCharge", fee_id="number-442071234567")
    assert (status, active["state"]) == (200, "active")
    assert await fee_entries(billing) == {
        "fee:acme:number-442071234567:setup": -10_000_000,
        "fee:acme:number-442071234567:2026-11": -5_000_000,
    }
    assert (await api("activateNumberCharge", fee_id="number-442071234567"))[0] == 409
    clock.advance(days=11)  # the other reservation is now 21 days old
    status, problem = await api("activateNumberCharge", fee_id="number-442071234568")
    assert (status, problem["detail"]) == (409, "the reservation lapsed after 20 days")
    assert (await billing.fees.get("acme", "number-442071234568") or {})["state"] == "lapsed"

    clock.now = datetime(2026, 12, 10, tzinfo=UTC)
    status, released = await api("releaseNumberCharge", fee_id="number-442071234567")
    assert (status, released["state"]) == (200, "awaiting_deletion")
    clock.now = datetime(2027, 1, 20, tzinfo=UTC)
    done = await billing.fees.run_once()
    assert done["deleted"] == 1
    assert sorted(await fee_entries(billing)) == [
        "fee:acme:number-442071234567:2026-11",
        "fee:acme:number-442071234567:2026-12",
        "fee:acme:number-442071234567:setup",
    ]
    assert (await api("releaseNumberCharge", fee_id="nope"))[0] == 404
    status, listed = await api("listFees")
    assert [(f["fee_id"], f["state"]) for f in listed["items"]] == [
        ("number-442071234567", "deleted"),
        ("number-442071234568", "lapsed"),
    ]


def pdf_text(pdf: bytes) -> str:
    """The text-drawing operators of a PDF's (Flate) content streams."""
    texts = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        with contextlib.suppress(zlib.error):
            texts.append(zlib.decompress(stream).decode("latin-1"))
    return "\n".join(texts)


async def test_invoices_for_a_top_up_and_for_an_ended_month(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    clock = Clock(datetime(2026, 11, 20, 12, tzinfo=UTC))
    billing = await open_billing(mongo, clock)
    billing.issuer = Issuer(Party("Ringwise Ltd", "GB123456789", "GB"), Decimal("0.20"))

    def profiled(doc: dict[str, Any]) -> dict[str, Any]:
        profile = {"company": "Acme GmbH", "vat_id": "DE123456789", "country": "DE"}
        return {**doc, "profile": profile}

    await billing.accounts.change("acme", profiled)
    await billing.fees.subscribe(
        "acme", "hpbx", "service", "Hosted PBX", 16_990_000, currency="EUR"
    )
    await billing.fees.run_once()
    router = wiring.router(lambda: billing)

    async def api(operation: str, **params: str) -> api_pb2.ApiReply:
        return await router.dispatch(
            ApiCall(
                operation=operation,
                principal=OPERATOR,
                path_params={"tenant_id": "acme", **params},
            )
        )

    assert (await api("getMonthlyInvoice", period="2026-11")).status == 409  # not ended
    assert (await api("getMonthlyInvoice", period="November")).status == 400
    clock.now = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
    reply = await api("getMonthlyInvoice", period="2026-11")
    assert (reply.status, reply.content_type) == (200, "application/pdf")
    assert reply.body.startswith(b"%PDF-")
    assert reply.body == (await api("getMonthlyInvoice", period="2026-11")).body  # stable
    text = pdf_text(reply.body)
    for expected in ("M-acme-2026-11", "Acme GmbH", "VAT DE123456789", "Hosted PBX", "16.99"):
        assert expected in text, expected
    invoice = await monthly_invoice(
        billing.issuer,
        billing.ledger,
        await billing.accounts.get("acme"),
        "acme",
        "2026-11",
        clock.now,
    )
    assert (invoice.net, invoice.vat, invoice.gross) == (
        Decimal("16.99"),
        Decimal("3.40"),
        Decimal("20.39"),
    )

    topups = TopUps(
        mongo,
        billing.topups.topups.database.name,
        billing.ledger,
        billing.accounts,
        {"test": TestProvider(), "bank_transfer": BankTransferProvider()},
    )
    billing.topups = topups
    done, _ = await topups.create("acme", 50_000_000, "test", created_by="ann")
    pending, _ = await topups.create("acme", 20_000_000, "bank_transfer", created_by="ann")
    reply = await api("getTopUpInvoice", topup_id=done["_id"])
    assert reply.status == 200
    text = pdf_text(reply.body)
    assert "Advance payment for telecommunication services" in text
    assert "60.00 EUR" in text  # 50.00 + 20 % VAT
    assert (await api("getTopUpInvoice", topup_id=pending["_id"])).status == 409
    assert (await api("getTopUpInvoice", topup_id="nope")).status == 404
