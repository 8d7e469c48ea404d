"""Booking calls: CallEnded -> the pure rater -> one ledger entry per call -> the balance.

Every step is idempotent, so the consumer's at-least-once delivery books each call exactly
once: the entry's id is the call's id, and applying it to the balance is keyed too.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from ringwise.events.v1 import call_pb2
from ringwise_kit.events import from_timestamp

from ringwise_billing.accounts.store import AccountStore
from ringwise_billing.ledger.store import LedgerStore, call_entry_id, charge_entry
from ringwise_billing.rating.rater import CallToRate, Charge, Direction, rate_call
from ringwise_billing.tariffs.store import TariffStore

DIRECTIONS = {
    call_pb2.DIRECTION_INBOUND: Direction.INBOUND,
    call_pb2.DIRECTION_OUTBOUND: Direction.OUTBOUND,
    call_pb2.DIRECTION_INTERNAL: Direction.INTERNAL,
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def call_to_rate(event: call_pb2.CallEnded) -> CallToRate:
    header = event.header
    answered = event.disposition == call_pb2.DISPOSITION_ANSWERED
    return CallToRate(
        call_id=header.call_id,
        tenant_id=header.tenant_id,
        # An unknown direction is rated as outbound: never give a chargeable call away.
        direction=DIRECTIONS.get(event.direction, Direction.OUTBOUND),
        from_number=event.from_number,
        to_number=event.to_number,
        started_at=from_timestamp(event.started_at) or EPOCH,
        billable_ms=int(event.billable_ms) if answered else 0,
    )


class Booker:
    def __init__(self, tariffs: TariffStore, ledger: LedgerStore, accounts: AccountStore) -> None:
        self.tariffs = tariffs
        self.ledger = ledger
        self.accounts = accounts

    async def rate(self, calls: Iterable[CallToRate]) -> list[tuple[CallToRate, Charge]]:
        rated = []
        for call in calls:
            book = await self.tariffs.book(call.tenant_id)
            rated.append((call, rate_call(call, book)))
        return rated

    async def book(self, events: Iterable[call_pb2.CallEnded]) -> set[str]:
        """Rate and book the calls; returns the ids of the calls booked now (the rest had been
        booked before: a redelivery). Raises on a store failure (the batch is retried)."""
        calls = [call_to_rate(event) for event in events if event.header.tenant_id]
        now = datetime.now(UTC)
        docs = [
            charge_entry(charge, call.started_at, now) for call, charge in await self.rate(calls)
        ]
        appended = await self.ledger.append_once(docs)
        # Apply every entry of the batch that is not applied yet, new or not: a crash may
        # have come between the append and the apply.
        await self.accounts.apply_pending([call_entry_id(call.call_id) for call in calls])
        return {doc["call_id"] for doc in docs if doc["_id"] in appended}
