"""Subscriptions (what a tenant pays monthly for) and the job that charges them.

Each charge is a ledger entry keyed by subscription and period (`fee:<tenant>:<fee>:<YYYY-MM>`,
setup fees `...:setup`), so the job may run any number of times, in any number of processes,
after any downtime: each period is charged exactly once, and missed periods are caught up.

Numbers follow the seed's lifecycle: Reserved (no charges; lapses after 20 days unless
activated), Active (setup fee once, then the monthly fee from the month of activation),
Awaiting deletion (no fee from the month after release; deleted after the grace period).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from ringwise_billing.accounts.store import AccountStore
from ringwise_billing.fees.periods import due_periods, month_start, next_month, period_key
from ringwise_billing.ledger.store import FEE, LedgerStore

Doc = dict[str, Any]
Clock = Callable[[], datetime]

SERVICE, USER, NUMBER = "service", "user", "number"
KINDS = (SERVICE, USER, NUMBER)
# Number states.
RESERVED, ACTIVE, AWAITING_DELETION, LAPSED, DELETED = (
    "reserved",
    "active",
    "awaiting_deletion",
    "lapsed",
    "deleted",
)
RESERVATION_DAYS = 20
DELETION_GRACE_DAYS = 30


class FeeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def utc_now() -> datetime:
    return datetime.now(UTC)


class Fees:
    def __init__(
        self,
        client: AsyncMongoClient[Doc],
        database: str,
        ledger: LedgerStore,
        accounts: AccountStore,
        clock: Clock = utc_now,
    ) -> None:
        self.subscriptions: AsyncCollection[Doc] = client[database].subscriptions
        self.ledger = ledger
        self.accounts = accounts
        self.clock = clock

    async def ensure_indexes(self) -> None:
        await self.subscriptions.create_index([("tenant_id", ASCENDING), ("kind", ASCENDING)])
        await self.subscriptions.create_index([("state", ASCENDING)])

    # ------------------------------------------------------------------ subscriptions

    async def subscribe(
        self,
        tenant_id: str,
        fee_id: str,
        kind: str,
        description: str,
        monthly_micros: int,
        *,
        setup_micros: int = 0,
        currency: str,
        starts_at: datetime | None = None,
        number: str = "",
        state: str = ACTIVE,
    ) -> Doc:
        now = self.clock()
        doc: Doc = {
            "_id": f"{tenant_id}:{fee_id}",
            "tenant_id": tenant_id,
            "fee_id": fee_id,
            "kind": kind,
            "description": description,
            "monthly_micros": monthly_micros,
            "setup_micros": setup_micros,
            "currency": currency,
            "number": number,
            "state": state,
            "starts_at": (starts_at or now) if state == ACTIVE else None,
            "ends_at": None,
            "reserved_until": now + timedelta(days=RESERVATION_DAYS) if state == RESERVED else None,
            "delete_after": None,
            "created_at": now,
        }
        try:
            await self.subscriptions.insert_one(doc)
        except DuplicateKeyError:
            raise FeeError(409, f"{fee_id} exists") from None
        return doc

    async def get(self, tenant_id: str, fee_id: str) -> Doc | None:
        return await self.subscriptions.find_one({"_id": f"{tenant_id}:{fee_id}"})

    async def of_tenant(self, tenant_id: str, kind: str | None = None) -> list[Doc]:
        query: Doc = {"tenant_id": tenant_id}
        if kind is not None:
            query["kind"] = kind
        return await self.subscriptions.find(query).sort("_id", ASCENDING).to_list()

    async def _transition(
        self, tenant_id: str, fee_id: str, allowed_from: tuple[str, ...], change: Doc
    ) -> Doc:
        result = await self.subscriptions.update_one(
            {"_id": f"{tenant_id}:{fee_id}", "state": {"$in": list(allowed_from)}},
            {"$set": change},
        )
        doc = await self.get(tenant_id, fee_id)
        if doc is None:
            raise FeeError(404, f"no such fee {fee_id}")
        if result.matched_count == 0:
            raise FeeError(409, f"{fee_id} is {doc['state']}, not {' or '.join(allowed_from)}")
        return doc

    async def end(self, tenant_id: str, fee_id: str) -> Doc:
        """Stop a service or user fee: the current month stays charged, no later one."""
        return await self._transition(
            tenant_id, fee_id, (ACTIVE,), {"state": DELETED, "ends_at": self.clock()}
        )

    # ------------------------------------------------------------------ number lifecycle

    async def reserve_number(
        self, tenant_id: str, number: str, monthly_micros: int, setup_micros: int, currency: str
    ) -> Doc:
        return await self.subscribe(
            tenant_id,
            f"number-{number.lstrip('+')}",
            NUMBER,
            f"Number {number}",
            monthly_micros,
            setup_micros=setup_micros,
            currency=currency,
            number=number,
            state=RESERVED,
        )

    async def activate_number(self, tenant_id: str, fee_id: str) -> Doc:
        now = self.clock()
        doc = await self.get(tenant_id, fee_id)
        if doc is not None and doc["state"] == RESERVED and doc["reserved_until"] <= now:
            await self.lapse_reservations()
            raise FeeError(409, "the reservation lapsed after 20 days")
        doc = await self._transition(
            tenant_id, fee_id, (RESERVED,), {"state": ACTIVE, "starts_at": now}
        )
        await self.charge_due(tenant_id)
        return doc

    async def release_number(self, tenant_id: str, fee_id: str) -> Doc:
        now = self.clock()
        return await self._transition(
            tenant_id,
            fee_id,
            (ACTIVE,),
            {
                "state": AWAITING_DELETION,
                "ends_at": now,
                "delete_after": now + timedelta(days=DELETION_GRACE_DAYS),
            },
        )

    async def lapse_reservations(self) -> int:
        """Reservations not activated within 20 days go back to the pool, uncharged."""
        result = await self.subscriptions.update_many(
            {"state": RESERVED, "reserved_until": {"$lte": self.clock()}},
            {"$set": {"state": LAPSED}},
        )
        return int(result.modified_count)

    async def delete_released(self) -> int:
        result = await self.subscriptions.update_many(
            {"state": AWAITING_DELETION, "delete_after": {"$lte": self.clock()}},
            {"$set": {"state": DELETED}},
        )
        return int(result.modified_count)

    # ------------------------------------------------------------------ charging

    def entries_due(self, doc: Doc, now: datetime) -> list[Doc]:
        """The fee entries owed by now, from the last period already booked on (booking
        them again is harmless: their keys are there; this only keeps the job's work small)."""
        starts_at = doc.get("starts_at")
        if starts_at is None:
            return []
        entries = []
        base = {
            "tenant_id": doc["tenant_id"],
            "kind": FEE,
            "fee_id": doc["fee_id"],
            "fee_kind": doc["kind"],
            "description": doc["description"],
            "currency": doc["currency"],
            "booked_at": now,
            "applied": False,
        }
        if doc.get("setup_micros") and not doc.get("setup_charged"):
            entries.append(
                {
                    **base,
                    "_id": f"fee:{doc['tenant_id']}:{doc['fee_id']}:setup",
                    "period": "setup",
                    "amount_micros": -int(doc["setup_micros"]),
                    "occurred_at": starts_at,
                }
            )
        charged_through = doc.get("charged_through") or ""
        if doc.get("monthly_micros"):
            for period in due_periods(starts_at, doc.get("ends_at"), now):
                key = period_key(period)
                if key < charged_through:
                    continue
                entries.append(
                    {
                        **base,
                        "_id": f"fee:{doc['tenant_id']}:{doc['fee_id']}:{key}",
                        "period": key,
                        "amount_micros": -int(doc["monthly_micros"]),
                        "occurred_at": max(period, starts_at),
                    }
                )
        return entries

    async def charge_due(self, tenant_id: str | None = None) -> int:
        """Book every fee due by now that is not booked yet; returns how many were booked."""
        now = self.clock()
        query: Doc = {"starts_at": {"$ne": None}}
        if tenant_id is not None:
            query["tenant_id"] = tenant_id
        booked = 0
        async for doc in self.subscriptions.find(query):
            entries = self.entries_due(doc, now)
            if not entries:
                continue
            booked += len(await self.ledger.append_once(entries))
            await self.accounts.apply_pending([e["_id"] for e in entries])
            periods = [e["period"] for e in entries if e["period"] != "setup"]
            progress: Doc = {
                "setup_charged": bool(doc.get("setup_charged"))
                or any(e["period"] == "setup" for e in entries)
            }
            if periods:
                progress["charged_through"] = max(periods)
            await self.subscriptions.update_one({"_id": doc["_id"]}, {"$set": progress})
        return booked

    async def next_payment(self, tenant_id: str) -> Doc | None:
        """The next period's date and what the fees in force then will cost."""
        now = self.clock()
        period = next_month(month_start(now))
        total = 0
        currency = ""
        for doc in await self.of_tenant(tenant_id):
            active = doc["state"] == ACTIVE and doc.get("starts_at") is not None
            if active and (doc.get("ends_at") is None or doc["ends_at"] > period):
                total += int(doc["monthly_micros"])
                currency = doc["currency"]
        if total == 0:
            return None
        return {"date": period.date().isoformat(), "amount_micros": total, "currency": currency}

    async def run_once(self) -> dict[str, int]:
        """The scheduled job: lapse old reservations, delete released numbers, charge."""
        return {
            "lapsed": await self.lapse_reservations(),
            "deleted": await self.delete_released(),
            "charged": await self.charge_due(),
        }
