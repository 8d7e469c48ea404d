"""Ledger entries in Mongo: append-only, each keyed by what caused it, so booking it again
(a redelivered event, a retried job) finds it there and books nothing.

Entry ids: `call:<call_id>` (the rating of a call), `adj:<call_id>:<run_id>` (a re-rating's
difference), `topup:<topup_id>`, `fee:<tenant>:<service>:<period>`. Amounts are signed
integer micro-units of the entry's currency: charges are negative, credits positive, so a
balance is a plain sum. `applied` records that the entry is in the account's balance
(accounts/store.py); it is the only field ever updated, from false to true.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from ringwise_billing.rating.rater import Charge

Doc = dict[str, Any]
DUPLICATE_KEY = 11000

CALL = "call"
ADJUSTMENT = "adjustment"
TOPUP = "topup"
FEE = "fee"


def call_entry_id(call_id: str) -> str:
    return f"call:{call_id}"


def charge_entry(charge: Charge, call_started_at: datetime, booked_at: datetime) -> Doc:
    return {
        "_id": call_entry_id(charge.call_id),
        "tenant_id": charge.tenant_id,
        "kind": CALL,
        "call_id": charge.call_id,
        "amount_micros": -charge.amount_micros,
        "currency": charge.currency,
        "outcome": charge.outcome.value,
        "seconds": charge.seconds,
        "billed_seconds": charge.billed_seconds,
        "prefix": charge.prefix,
        "tariff_version": charge.tariff_version,
        "tariff_revision": charge.tariff_revision,
        "occurred_at": call_started_at,
        "booked_at": booked_at,
        "applied": False,
    }


class LedgerStore:
    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        self.entries: AsyncCollection[Doc] = client[database].ledger

    async def ensure_indexes(self) -> None:
        await self.entries.create_index([("tenant_id", ASCENDING), ("occurred_at", ASCENDING)])
        await self.entries.create_index([("call_id", ASCENDING)])
        await self.entries.create_index([("applied", ASCENDING)])

    async def append_once(self, docs: list[Doc]) -> set[str]:
        """Append entries in one round trip; returns the ids appended now (the others were
        there already). Any error other than a duplicate key is raised."""
        if not docs:
            return set()
        try:
            await self.entries.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            duplicates = {docs[error["index"]]["_id"] for error in errors}
            return {doc["_id"] for doc in docs} - duplicates
        return {doc["_id"] for doc in docs}

    async def unapplied(self, ids: Iterable[str] | None = None) -> list[Doc]:
        """Entries not yet in their account's balance (all of them, or among `ids`)."""
        query: Doc = {"applied": False}
        if ids is not None:
            query["_id"] = {"$in": list(ids)}
        return await self.entries.find(query).sort("_id", ASCENDING).to_list()

    async def mark_applied(self, ids: list[str]) -> None:
        if ids:
            await self.entries.update_many(
                {"_id": {"$in": ids}, "applied": False}, {"$set": {"applied": True}}
            )

    async def of_calls(self, call_ids: list[str]) -> list[Doc]:
        return await self.entries.find({"call_id": {"$in": call_ids}}).to_list()

    async def of_tenant(
        self,
        tenant_id: str,
        *,
        kinds: Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Doc]:
        query: Doc = {"tenant_id": tenant_id}
        if kinds is not None:
            query["kind"] = {"$in": list(kinds)}
        window: Doc = {}
        if since is not None:
            window["$gte"] = since
        if until is not None:
            window["$lt"] = until
        if window:
            query["occurred_at"] = window
        cursor = self.entries.find(query).sort([("occurred_at", ASCENDING), ("_id", ASCENDING)])
        return await cursor.to_list()

    async def total(self, tenant_id: str, **filters: Any) -> int:
        return sum(int(doc["amount_micros"]) for doc in await self.of_tenant(tenant_id, **filters))
