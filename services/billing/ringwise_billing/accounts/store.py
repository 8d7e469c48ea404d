"""Prepaid accounts in Mongo: one document per tenant, changed only by compare-and-set on
its `version`, so concurrent writers (rating batches, authorisations, top-ups; one or many
billing processes) never lose each other's changes.

The balance is the sum of the tenant's applied ledger entries. Applying entries is made
idempotent by keeping the ids of the last APPLIED_IDS_KEPT applied entries in the account: a
crash after the account update but before the entries are marked applied is repaired by the
next apply (on start-up or on redelivery), which finds their ids there and only marks them.

Reservations hold funds for calls in progress (credit authorisation); the rating of a call
replaces its reservation in the same account update, and an unreleased reservation stops
counting when it expires.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from ringwise_billing.ledger.store import LedgerStore

Doc = dict[str, Any]
APPLIED_IDS_KEPT = 1000
MAX_ATTEMPTS = 200

INACTIVE = "inactive"
ACTIVE = "active"
FAIL_CLOSED = "deny"
FAIL_OPEN = "allow"


class Contended(Exception):
    """The account kept changing under us (should not happen outside pathological load)."""


def active_reservations(doc: Doc, now: datetime) -> list[Doc]:
    return [r for r in doc.get("reservations", []) if r["expires_at"] > now]


def reserved_micros(doc: Doc, now: datetime, except_call: str = "") -> int:
    return sum(
        int(r["amount_micros"])
        for r in active_reservations(doc, now)
        if r["call_id"] != except_call
    )


def is_blocked(doc: Doc | None) -> bool:
    """Services are blocked while the account is not active or its balance is not positive;
    a top-up that brings it above zero unblocks them (nothing else to switch back)."""
    return doc is None or doc.get("status") != ACTIVE or int(doc.get("balance_micros", 0)) <= 0


def new_account(tenant_id: str, currency: str = "") -> Doc:
    return {
        "_id": tenant_id,
        "status": INACTIVE,
        "currency": currency,
        "balance_micros": 0,
        "applied_ids": [],
        "reservations": [],
        "profile": None,
        "on_billing_unavailable": FAIL_CLOSED,
        "version": 0,
    }


class AccountStore:
    def __init__(self, client: AsyncMongoClient[Doc], database: str, ledger: LedgerStore) -> None:
        self.accounts: AsyncCollection[Doc] = client[database].accounts
        self.ledger = ledger
        # Writers in this process take turns per account, so they do not spend round trips
        # losing compare-and-sets to each other; other processes are still kept out by CAS.
        self._turns: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def get(self, tenant_id: str) -> Doc | None:
        return await self.accounts.find_one({"_id": tenant_id})

    async def change(
        self, tenant_id: str, edit: Callable[[Doc], Doc | None], *, create: bool = True
    ) -> Doc | None:
        """Compare-and-set loop: `edit` gets a copy of the account (a new one when missing
        and `create`) and returns the new document, or None to change nothing."""
        async with self._turns[tenant_id]:
            return await self._change(tenant_id, edit, create=create)

    async def _change(
        self, tenant_id: str, edit: Callable[[Doc], Doc | None], *, create: bool
    ) -> Doc | None:
        for attempt in range(MAX_ATTEMPTS):
            current = await self.get(tenant_id)
            if current is None and not create:
                return None
            base = current if current is not None else new_account(tenant_id)
            version = int(base.get("version", 0))
            edited = edit({**base})
            if edited is None:
                return current
            edited["version"] = version + 1
            edited["_id"] = tenant_id
            try:
                if current is None:
                    await self.accounts.insert_one(edited)
                    return edited
                result = await self.accounts.replace_one(
                    {"_id": tenant_id, "version": version}, edited
                )
            except DuplicateKeyError:
                result = None  # created meanwhile by another writer
            if result is not None and result.matched_count == 1:
                return edited
            await asyncio.sleep(min(0.001 * attempt, 0.02))
        raise Contended(tenant_id)

    async def apply_pending(self, ids: list[str] | None = None) -> int:
        """Bring unapplied ledger entries (among `ids`, or all) into their balances, and drop
        the reservations of the calls they rate. Returns how many entries were applied now."""
        entries = await self.ledger.unapplied(ids)
        by_tenant: dict[str, list[Doc]] = defaultdict(list)
        for entry in entries:
            by_tenant[entry["tenant_id"]].append(entry)
        applied_now = 0
        for tenant_id, tenant_entries in by_tenant.items():
            applied_now += await self._apply(tenant_id, tenant_entries)
        await self.ledger.mark_applied([e["_id"] for e in entries])
        return applied_now

    async def _apply(self, tenant_id: str, entries: list[Doc]) -> int:
        counted: list[int] = [0]

        def edit(account: Doc) -> Doc | None:
            known = set(account.get("applied_ids", []))
            new = [e for e in entries if e["_id"] not in known]
            counted[0] = len(new)
            if not new:
                return None
            if not account.get("currency"):
                account["currency"] = new[0].get("currency", "")
            account["balance_micros"] = int(account.get("balance_micros", 0)) + sum(
                int(e["amount_micros"]) for e in new
            )
            ids = [*account.get("applied_ids", []), *(e["_id"] for e in new)]
            account["applied_ids"] = ids[-APPLIED_IDS_KEPT:]
            settled = {e["call_id"] for e in new if e.get("call_id")}
            now = datetime.now(UTC)
            account["reservations"] = [
                r
                for r in account.get("reservations", [])
                if r["call_id"] not in settled and r["expires_at"] > now
            ]
            return account

        await self.change(tenant_id, edit)
        return counted[0]

    async def release(self, tenant_id: str, call_id: str) -> bool:
        released = [False]

        def edit(account: Doc) -> Doc | None:
            kept = [r for r in account.get("reservations", []) if r["call_id"] != call_id]
            if len(kept) == len(account.get("reservations", [])):
                return None
            released[0] = True
            account["reservations"] = kept
            return account

        await self.change(tenant_id, edit, create=False)
        return released[0]
