"""Top-ups: a payment through a provider, credited to the balance exactly once.

Crediting = a ledger entry `topup:<id>` (append-only, keyed), applied to the balance, then
the top-up marked completed. Each step is idempotent, so confirming twice, or again after a
crash half-way, credits once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from ringwise_billing.accounts.payments import (
    PaymentProvider,
    PaymentRequest,
    PaymentStatus,
)
from ringwise_billing.accounts.store import AccountStore
from ringwise_billing.ledger.store import TOPUP, LedgerStore

Doc = dict[str, Any]


class TopUpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def topup_id_for(tenant_id: str, idempotency_key: str) -> str:
    if not idempotency_key:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{tenant_id}\0{idempotency_key}".encode()).hexdigest()[:32]


class TopUps:
    def __init__(
        self,
        client: AsyncMongoClient[Doc],
        database: str,
        ledger: LedgerStore,
        accounts: AccountStore,
        providers: Mapping[str, PaymentProvider],
    ) -> None:
        self.topups: AsyncCollection[Doc] = client[database].topups
        self.ledger = ledger
        self.accounts = accounts
        self.providers = dict(providers)

    async def ensure_indexes(self) -> None:
        await self.topups.create_index([("tenant_id", ASCENDING), ("created_at", ASCENDING)])

    async def create(
        self,
        tenant_id: str,
        amount_micros: int,
        provider_name: str,
        *,
        created_by: str,
        idempotency_key: str = "",
        provider_data: dict[str, Any] | None = None,
    ) -> tuple[Doc, bool]:
        """Start a top-up; returns (top-up, created now). The same idempotency key with the
        same request gives the first top-up back; with another request, TopUpError 422."""
        account = await self.accounts.get(tenant_id)
        if account is None or account.get("status") != "active":
            raise TopUpError(409, "activate the account before topping it up")
        provider = self.providers.get(provider_name)
        if provider is None:
            raise TopUpError(422, f"unknown payment provider {provider_name!r}")
        topup_id = topup_id_for(tenant_id, idempotency_key)
        fingerprint = hashlib.sha256(
            repr((amount_micros, provider_name, sorted((provider_data or {}).items()))).encode()
        ).hexdigest()
        existing = await self.topups.find_one({"_id": topup_id})
        if existing is not None:
            if existing["tenant_id"] != tenant_id or existing["fingerprint"] != fingerprint:
                raise TopUpError(422, "this Idempotency-Key was used for another request")
            return existing, False
        doc: Doc = {
            "_id": topup_id,
            "tenant_id": tenant_id,
            "amount_micros": amount_micros,
            "currency": account.get("currency", ""),
            "provider": provider_name,
            "status": PaymentStatus.PENDING.value,
            "reference": "",
            "instructions": "",
            "failure": "",
            "fingerprint": fingerprint,
            "created_by": created_by,
            "created_at": datetime.now(UTC),
            "completed_at": None,
        }
        try:
            await self.topups.insert_one(doc)
        except DuplicateKeyError:  # the same key raced in: answer as the first one did
            again = await self.topups.find_one({"_id": topup_id})
            assert again is not None
            return again, False
        outcome = await provider.start(
            PaymentRequest(topup_id, tenant_id, amount_micros, doc["currency"], provider_data or {})
        )
        update = {
            "reference": outcome.reference,
            "instructions": outcome.instructions,
            "failure": outcome.failure,
        }
        if outcome.status is PaymentStatus.FAILED:
            update["status"] = PaymentStatus.FAILED.value
        await self.topups.update_one({"_id": topup_id}, {"$set": update})
        doc.update(update)
        if outcome.status is PaymentStatus.COMPLETED:
            doc = await self.complete(tenant_id, topup_id)
        return doc, True

    async def complete(self, tenant_id: str, topup_id: str) -> Doc:
        """The money arrived: credit it (once) and mark the top-up completed."""
        doc = await self.topups.find_one({"_id": topup_id, "tenant_id": tenant_id})
        if doc is None:
            raise TopUpError(404, "no such top-up")
        if doc["status"] == PaymentStatus.FAILED.value:
            raise TopUpError(409, "the payment failed; start a new top-up")
        now = datetime.now(UTC)
        entry_id = f"topup:{topup_id}"
        await self.ledger.append_once(
            [
                {
                    "_id": entry_id,
                    "tenant_id": tenant_id,
                    "kind": TOPUP,
                    "topup_id": topup_id,
                    "provider": doc["provider"],
                    "reference": doc["reference"],
                    "amount_micros": int(doc["amount_micros"]),
                    "currency": doc["currency"],
                    "occurred_at": now,
                    "booked_at": now,
                    "applied": False,
                }
            ]
        )
        await self.accounts.apply_pending([entry_id])
        await self.topups.update_one(
            {"_id": topup_id, "status": PaymentStatus.PENDING.value},
            {"$set": {"status": PaymentStatus.COMPLETED.value, "completed_at": now}},
        )
        done = await self.topups.find_one({"_id": topup_id})
        assert done is not None
        return done

    async def get(self, tenant_id: str, topup_id: str) -> Doc | None:
        return await self.topups.find_one({"_id": topup_id, "tenant_id": tenant_id})

    async def history(
        self,
        tenant_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        status: str | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[Doc]:
        """Newest first."""
        query: Doc = {"tenant_id": tenant_id}
        window: Doc = {}
        if since is not None:
            window["$gte"] = since
        if until is not None:
            window["$lt"] = until
        if window:
            query["created_at"] = window
        if status is not None:
            query["status"] = status
        if before is not None:
            created_at, topup_id = before
            query["$or"] = [
                {"created_at": {"$lt": created_at}},
                {"created_at": created_at, "_id": {"$lt": topup_id}},
            ]
        cursor = self.topups.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        return await cursor.limit(limit).to_list()
