"""Which invoices exist and what is on them, from the ledger (append-only, so an issued
invoice never changes):

- a top-up invoice for each completed top-up ("Advance payment for telecommunication
  services", as in the seed), issued when it completed;
- a monthly invoice for each ended month: the calls, re-rating adjustments and fees *booked*
  in that month (an adjustment booked in March for a February call is on March's invoice).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ringwise_billing.fees.periods import month_start, next_month
from ringwise_billing.invoices.document import Invoice, Line, Party
from ringwise_billing.ledger.store import ADJUSTMENT, CALL, FEE, LedgerStore

Doc = dict[str, Any]


class InvoiceError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Issuer:
    seller: Party = field(default_factory=lambda: Party("Ringwise"))
    vat_rate: Decimal = Decimal(0)


def buyer_of(account: Doc | None) -> Party:
    profile = (account or {}).get("profile") or {}
    return Party(
        name=profile.get("company", "") or (account or {}).get("_id", ""),
        vat_id=profile.get("vat_id", ""),
        country=profile.get("country", ""),
        address=profile.get("address", ""),
    )


def topup_invoice(issuer: Issuer, account: Doc | None, topup: Doc) -> Invoice:
    if topup["status"] != "completed":
        raise InvoiceError(409, "a top-up is invoiced once it has completed")
    return Invoice(
        number=f"T-{topup['_id'][:12].upper()}",
        issued_at=topup["completed_at"],
        title="Invoice",
        seller=issuer.seller,
        buyer=buyer_of(account),
        currency=topup["currency"],
        lines=(Line("Advance payment for telecommunication services", 1, topup["amount_micros"]),),
        vat_rate=issuer.vat_rate,
        notes=(f"Payment reference {topup.get('reference', '')} via {topup['provider']}.",),
    )


def parse_period(text: str) -> datetime:
    try:
        start = datetime.strptime(text, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise InvoiceError(400, "a period is YYYY-MM") from None
    return start


async def monthly_invoice(
    issuer: Issuer,
    ledger: LedgerStore,
    account: Doc | None,
    tenant_id: str,
    period: str,
    now: datetime,
) -> Invoice:
    start = parse_period(period)
    end = next_month(start)
    if end > month_start(now):
        raise InvoiceError(409, "a month is invoiced once it has ended")
    entries = await ledger.entries.find(
        {
            "tenant_id": tenant_id,
            "kind": {"$in": [CALL, ADJUSTMENT, FEE]},
            "booked_at": {"$gte": start, "$lt": end},
        }
    ).to_list()
    calls = [e for e in entries if e["kind"] == CALL and e["amount_micros"]]
    adjustments = [e for e in entries if e["kind"] == ADJUSTMENT]
    fees: dict[str, list[Doc]] = defaultdict(list)
    for entry in entries:
        if entry["kind"] == FEE:
            fees[entry.get("description") or entry.get("fee_id", "fee")].append(entry)
    lines: list[Line] = []
    for description in sorted(fees):
        group = fees[description]
        lines.append(Line(description, len(group), -sum(e["amount_micros"] for e in group)))
    if calls:
        lines.append(Line("Calls", len(calls), -sum(e["amount_micros"] for e in calls)))
    if adjustments:
        lines.append(
            Line(
                "Re-rating adjustments",
                len(adjustments),
                -sum(e["amount_micros"] for e in adjustments),
            )
        )
    currency = (account or {}).get("currency") or (entries[0]["currency"] if entries else "")
    return Invoice(
        number=f"M-{tenant_id}-{period}",
        issued_at=end,
        title="Invoice",
        seller=issuer.seller,
        buyer=buyer_of(account),
        currency=currency,
        lines=tuple(lines),
        period=period,
        vat_rate=issuer.vat_rate,
        notes=("Prepaid account: these charges were taken from the balance.",),
    )
