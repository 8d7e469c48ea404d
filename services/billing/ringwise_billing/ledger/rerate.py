"""Re-rating a period after a tariff correction: never an edit, always adjustments.

For each call of the tenant that started in the period, the rater prices it again with the
tariffs as they are now; where that differs from what the ledger holds for the call (its
charge plus earlier adjustments), an adjustment entry books the difference. A run has an id:
running it again (a retry) books nothing twice, and a later run only books what changed since.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ringwise_billing.cdrs.store import CdrStore
from ringwise_billing.ledger.booking import EPOCH, Booker
from ringwise_billing.ledger.store import ADJUSTMENT, call_entry_id
from ringwise_billing.rating.rater import CallToRate, Direction

Doc = dict[str, Any]
DIRECTIONS = {
    "DIRECTION_INBOUND": Direction.INBOUND,
    "DIRECTION_OUTBOUND": Direction.OUTBOUND,
    "DIRECTION_INTERNAL": Direction.INTERNAL,
}


@dataclass(frozen=True)
class RerateResult:
    run_id: str
    calls: int
    adjusted: int
    adjustment_micros: int  # signed sum booked by this run (negative: the tenant pays more)


def call_from_cdr(doc: Doc) -> CallToRate:
    answered = doc.get("disposition") == "DISPOSITION_ANSWERED"
    return CallToRate(
        call_id=doc["_id"],
        tenant_id=doc["tenant_id"],
        direction=DIRECTIONS.get(doc.get("direction", ""), Direction.OUTBOUND),
        from_number=doc.get("from_number", ""),
        to_number=doc.get("to_number", ""),
        started_at=doc.get("started_at") or EPOCH,
        billable_ms=int(doc.get("billable_ms", 0)) if answered else 0,
    )


async def rerate(
    cdrs: CdrStore,
    booker: Booker,
    tenant_id: str,
    since: datetime,
    until: datetime,
    run_id: str,
    reason: str = "",
) -> RerateResult:
    await booker.tariffs.book(tenant_id, fresh=True)  # the rater reads this fresh copy
    calls = [call_from_cdr(doc) for doc in await cdrs.started_between(tenant_id, since, until)]
    booked: dict[str, int] = defaultdict(int)
    rated: set[str] = set()
    for entry in await booker.ledger.of_calls([c.call_id for c in calls]):
        booked[entry["call_id"]] += int(entry["amount_micros"])
        if entry["_id"] == call_entry_id(entry["call_id"]):
            rated.add(entry["call_id"])
    # A call whose CDR is stored but not yet booked (its event is being redelivered) is left
    # to the consumer, which rates it with the corrected tariff anyway.
    calls = [call for call in calls if call.call_id in rated]
    now = datetime.now(UTC)
    adjustments: list[Doc] = []
    for call, charge in await booker.rate(calls):
        difference = -charge.amount_micros - booked.get(call.call_id, 0)
        if difference == 0:
            continue
        adjustments.append(
            {
                "_id": f"adj:{call.call_id}:{run_id}",
                "tenant_id": tenant_id,
                "kind": ADJUSTMENT,
                "call_id": call.call_id,
                "run_id": run_id,
                "reason": reason,
                "amount_micros": difference,
                "currency": charge.currency,
                "outcome": charge.outcome.value,
                "billed_seconds": charge.billed_seconds,
                "prefix": charge.prefix,
                "tariff_version": charge.tariff_version,
                "tariff_revision": charge.tariff_revision,
                "occurred_at": call.started_at,
                "booked_at": now,
                "applied": False,
            }
        )
    await booker.ledger.append_once(adjustments)
    await booker.accounts.apply_pending([a["_id"] for a in adjustments])
    return RerateResult(
        run_id=run_id,
        calls=len(calls),
        adjusted=len(adjustments),
        adjustment_micros=sum(a["amount_micros"] for a in adjustments),
    )
