"""Append-only, hash-chained audit log of every access to recordings, one chain per tenant.

Entry n stores hash(n) = SHA-256 over its canonical JSON (tenant, seq, time, actor, role,
action, target, reason, details) together with hash(n-1). Changing, removing or reordering
any entry breaks every hash after it; verify() walks the chain and names the first entry that
does not hold. Entries are keyed "<tenant>:<seq>", so two writers racing for the same seq
cannot fork the chain: the loser re-reads the head and appends after it.

The chain proves the log was not edited in place; an attacker able to rewrite the whole tail
(all later hashes) is caught only by comparing with an exported copy, which is why the log is
exportable with its hashes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Doc = dict[str, Any]
GENESIS = "0" * 64
HASHED_FIELDS = (
    "tenant_id",
    "seq",
    "at",
    "actor",
    "role",
    "action",
    "target",
    "reason",
    "details",
    "prev",
)


def entry_hash(entry: Doc) -> str:
    canonical = json.dumps(
        {name: entry.get(name) for name in HASHED_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    entries: int
    head: str
    broken_at: int | None = None
    problem: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": self.head,
            "broken_at_seq": self.broken_at,
            "problem": self.problem or None,
        }


class AuditLog:
    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        self.entries: AsyncCollection[Doc] = client[database].audit

    async def ensure_indexes(self) -> None:
        await self.entries.create_index([("tenant_id", ASCENDING), ("seq", ASCENDING)], unique=True)

    async def _head(self, tenant_id: str) -> Doc | None:
        return await self.entries.find_one({"tenant_id": tenant_id}, sort=[("seq", DESCENDING)])

    async def append(
        self,
        tenant_id: str,
        *,
        at: datetime,
        actor: str,
        role: str,
        action: str,
        target: str = "",
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> Doc:
        for _ in range(50):
            head = await self._head(tenant_id)
            seq = (head["seq"] if head else 0) + 1
            entry: Doc = {
                "_id": f"{tenant_id}:{seq:012d}",
                "tenant_id": tenant_id,
                "seq": seq,
                "at": at.isoformat(),
                "actor": actor,
                "role": role,
                "action": action,
                "target": target,
                "reason": reason,
                "details": details or {},
                "prev": head["hash"] if head else GENESIS,
            }
            entry["hash"] = entry_hash(entry)
            try:
                await self.entries.insert_one(entry)
            except DuplicateKeyError:
                continue  # another writer took this seq: chain after theirs
            return entry
        raise RuntimeError(f"audit chain of {tenant_id}: too much contention")

    async def page(self, tenant_id: str, after_seq: int, limit: int) -> list[Doc]:
        cursor = self.entries.find({"tenant_id": tenant_id, "seq": {"$gt": after_seq}}).sort(
            "seq", ASCENDING
        )
        return await cursor.limit(limit).to_list(length=limit)

    async def verify(self, tenant_id: str) -> ChainCheck:
        prev = GENESIS
        expected_seq = 1
        count = 0
        cursor = self.entries.find({"tenant_id": tenant_id}).sort("seq", ASCENDING)
        async for entry in cursor:
            seq = entry.get("seq")
            if seq != expected_seq:
                return ChainCheck(False, count, prev, expected_seq, f"entry {expected_seq} missing")
            if entry.get("prev") != prev:
                return ChainCheck(False, count, prev, seq, "does not follow the previous entry")
            if entry_hash(entry) != entry.get("hash"):
                return ChainCheck(False, count, prev, seq, "content does not match its hash")
            prev = entry["hash"]
            expected_seq += 1
            count += 1
        return ChainCheck(True, count, prev)


def export_entry(entry: Doc) -> Doc:
    return {key: value for key, value in entry.items() if key != "_id"}
