"""Numbers in MongoDB (resolve_number itself: resolving.py).

Every change that can alter a resolve answer bumps the number's version (one directory-wide
counter, so versions only grow) and publishes NumberChanged, so routing drops its cached copy.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError
from ringwise_kit.api import ApiError

from ringwise_directory.common.context import Directory
from ringwise_directory.common.records import Doc, PageRequest, diff, find_page
from ringwise_directory.numbers.domain import due_for_release, reservation_expiry


class NumberStore:
    def __init__(self, directory: Directory) -> None:
        self._dir = directory
        self._db = directory.db
        self._numbers = directory.db.numbers

    async def ensure_indexes(self) -> None:
        await self._numbers.create_index([("number", ASCENDING)], unique=True)
        await self._numbers.create_index([("tenant_id", ASCENDING), ("number", ASCENDING)])
        await self._numbers.create_index(
            [("tenant_id", ASCENDING), ("assignment.type", ASCENDING), ("assignment.id", ASCENDING)]
        )
        await self._numbers.create_index([("status", ASCENDING)])

    async def next_version(self) -> int:
        counter = await self._db.counters.find_one_and_update(
            {"_id": "version"},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(counter["value"]) if counter else 1

    async def reserve(self, tenant_id: str, number: str, fields: dict[str, Any], actor: Doc) -> Doc:
        now = self._dir.now()
        assignment = fields.get("assignment")
        doc: Doc = {
            "number": number,
            "tenant_id": tenant_id,
            "status": "reserved",
            "label": fields.get("label"),
            "assignment": assignment,
            "user_id": assignment["id"] if assignment and assignment["type"] == "user" else None,
            "reserved_at": now,
            "expires_at": reservation_expiry(now),
            "activated_at": None,
            "deletion_due_at": None,
            "version": await self.next_version(),
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self._numbers.insert_one(doc)
        except DuplicateKeyError:
            raise ApiError(
                409,
                "Conflict",
                "the number is not available",
                errors=[{"field": "number", "message": "already reserved or in use"}],
            ) from None
        await self._dir.history.record(
            tenant_id, actor, "number.reserved", "number", number, after=doc
        )
        await self._dir.notifier.number_changed(tenant_id, number, doc["version"])
        return doc

    async def get(self, tenant_id: str, number: str) -> Doc | None:
        return await self._numbers.find_one({"tenant_id": tenant_id, "number": number})

    async def page(self, query: Doc, page: PageRequest) -> tuple[list[Doc], str | None]:
        return await find_page(self._numbers, query, page, "number")

    async def tenant_numbers(self, tenant_id: str, numbers: list[str]) -> set[str]:
        """Which of these numbers the tenant holds (any status)."""
        if not numbers:
            return set()
        docs = await self._numbers.find(
            {"tenant_id": tenant_id, "number": {"$in": numbers}}, {"number": 1}
        ).to_list()
        return {d["number"] for d in docs}

    async def update(self, current: Doc, changes: dict[str, Any], actor: Doc, action: str) -> Doc:
        if "assignment" in changes:
            assignment = changes["assignment"]
            changes["user_id"] = (
                assignment["id"] if assignment and assignment["type"] == "user" else None
            )
        version = await self.next_version()
        updated = await self._numbers.find_one_and_update(
            {
                "tenant_id": current["tenant_id"],
                "number": current["number"],
                "version": current["version"],
            },
            {"$set": {**changes, "version": version, "updated_at": self._dir.now()}},
            return_document=ReturnDocument.AFTER,
        )
        if updated is None:
            raise ApiError(412, "Precondition Failed", "the number changed meanwhile; retry")
        before, after = diff(current, updated)
        await self._dir.history.record(
            current["tenant_id"],
            actor,
            action,
            "number",
            current["number"],
            before=before,
            after=after,
        )
        await self._dir.notifier.number_changed(current["tenant_id"], current["number"], version)
        return updated

    async def release(self, doc: Doc, actor: Doc, reason: str) -> bool:
        result = await self._numbers.delete_one(
            {"tenant_id": doc["tenant_id"], "number": doc["number"], "version": doc["version"]}
        )
        if result.deleted_count == 0:
            return False
        # The tenant's users can no longer present or be reached on it.
        tenant_id, number = doc["tenant_id"], doc["number"]
        holding = {
            "tenant_id": tenant_id,
            "$or": [
                {"smartnumber": number},
                {"outbound_numbers": number},
                {"allowed_clis": number},
            ],
        }
        holders = [
            u["user_id"] for u in await self._db.users.find(holding, {"user_id": 1}).to_list()
        ]
        await self._db.users.update_many(
            {"tenant_id": tenant_id, "smartnumber": number},
            {"$set": {"smartnumber": None}, "$inc": {"version": 1}},
        )
        await self._db.users.update_many(
            {
                "tenant_id": tenant_id,
                "$or": [{"outbound_numbers": number}, {"allowed_clis": number}],
            },
            {"$pull": {"outbound_numbers": number, "allowed_clis": number}, "$inc": {"version": 1}},
        )
        await self._dir.history.record(
            doc["tenant_id"],
            actor,
            "number.released",
            "number",
            doc["number"],
            before=doc,
            detail=reason,
        )
        await self._dir.notifier.number_changed(
            doc["tenant_id"], doc["number"], await self.next_version()
        )
        if holders:
            # Their other numbers' answers carried the released number.
            await self.touch({"tenant_id": tenant_id, "user_id": {"$in": holders}})
        return True

    async def expire(self, now: Any = None) -> list[str]:
        """The lifecycle job: release reservations past 20 days and deletions past their due
        date. `now` is the job's clock (tests move it); returns the released numbers."""
        moment = now or self._dir.now()
        candidates = await self._numbers.find(
            {
                "$or": [
                    {"status": "reserved", "expires_at": {"$lte": moment}},
                    {"status": "awaiting_deletion", "deletion_due_at": {"$lte": moment}},
                ]
            }
        ).to_list()
        released = []
        job = {"id": "service:number-lifecycle", "role": "service", "email": ""}
        for doc in candidates:
            if not due_for_release(doc, moment):
                continue
            reason = "reservation expired" if doc["status"] == "reserved" else "deletion due"
            if await self.release(doc, job, reason):
                released.append(doc["number"])
        return released

    async def touch(self, query: Doc) -> list[str]:
        """Something numbers resolve through changed (a user, their devices, the tenant):
        bump the numbers' versions and tell routing. `query` always names the tenant."""
        if "tenant_id" not in query:
            raise ValueError("touch needs a tenant_id")
        docs = await self._numbers.find(query, {"number": 1, "tenant_id": 1}).to_list()
        for doc in docs:
            version = await self.next_version()
            await self._numbers.update_one({"_id": doc["_id"]}, {"$set": {"version": version}})
            await self._dir.notifier.number_changed(doc["tenant_id"], doc["number"], version)
        return [d["number"] for d in docs]

    async def unassign(self, tenant_id: str, kind: str, target_id: str, actor: Doc) -> None:
        """The assignee is gone: its numbers stay the tenant's, assigned to nobody."""
        docs = await self._numbers.find(
            {"tenant_id": tenant_id, "assignment.type": kind, "assignment.id": target_id}
        ).to_list()
        for doc in docs:
            await self.update(doc, {"assignment": None}, actor, "number.unassigned")

    async def upsert_fixture(self, row: Doc, version: int) -> bool:
        """Load one fixture number (active, assigned to its user); True when routing changed."""
        now = self._dir.now()
        wanted = {
            "tenant_id": row["tenant_id"],
            "status": "active",
            "assignment": {"type": "user", "id": row["user_id"]},
            "user_id": row["user_id"],
        }
        before = await self._numbers.find_one_and_update(
            {"number": row["number"]},
            {
                "$set": {**wanted, "version": version, "updated_at": now},
                "$setOnInsert": {
                    "label": None,
                    "reserved_at": now,
                    "expires_at": None,
                    "activated_at": now,
                    "deletion_due_at": None,
                    "created_at": now,
                },
            },
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        if before is None:
            return True
        return any(before.get(k) != v for k, v in wanted.items())
