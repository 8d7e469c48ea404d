"""Voicemail messages in Mongo: one document per message, keyed by its deposit id.

The deposit id is the idempotency key of the whole deposit pipeline: inserting twice is a
no-op, and each side effect (email, alert) is recorded on the document once it is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from ringwise_voicemail.mailbox.retention import Folder, RetentionPolicy

Doc = dict[str, Any]


@dataclass(frozen=True)
class Counts:
    new: int
    saved: int
    archived: int
    new_urgent: int = 0


class MessageStore:
    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        self._messages: AsyncCollection[Doc] = client[database].messages

    async def ensure_indexes(self) -> None:
        await self._messages.create_index(
            [("tenant_id", ASCENDING), ("user_id", ASCENDING), ("received_at", DESCENDING)]
        )
        await self._messages.create_index(
            [("tenant_id", ASCENDING), ("folder", ASCENDING), ("received_at", ASCENDING)]
        )

    async def insert_once(self, doc: Doc) -> bool:
        """True if stored now; False if this deposit was stored before (a redelivery)."""
        try:
            await self._messages.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def get(self, tenant_id: str, user_id: str, message_id: str) -> Doc | None:
        return await self._messages.find_one(
            {"_id": message_id, "tenant_id": tenant_id, "user_id": user_id}
        )

    async def by_id(self, message_id: str) -> Doc | None:
        return await self._messages.find_one({"_id": message_id})

    async def mark(self, message_id: str, **fields: Any) -> None:
        await self._messages.update_one({"_id": message_id}, {"$set": fields})

    async def claim(self, message_id: str, step: str, now: datetime) -> bool:
        """Record that a side effect is being done; False if it was done (or begun) before."""
        doc = await self._messages.find_one_and_update(
            {"_id": message_id, step: None},
            {"$set": {step: now}},
            return_document=ReturnDocument.AFTER,
        )
        return doc is not None

    async def set_folder(
        self, tenant_id: str, user_id: str, message_id: str, folder: Folder
    ) -> bool:
        result = await self._messages.update_one(
            {"_id": message_id, "tenant_id": tenant_id, "user_id": user_id},
            {"$set": {"folder": folder.value}},
        )
        return result.matched_count == 1

    async def set_urgent(self, tenant_id: str, user_id: str, message_id: str, urgent: bool) -> bool:
        result = await self._messages.update_one(
            {"_id": message_id, "tenant_id": tenant_id, "user_id": user_id},
            {"$set": {"urgent": urgent}},
        )
        return result.matched_count == 1

    async def delete(self, tenant_id: str, user_id: str, message_id: str) -> Doc | None:
        return await self._messages.find_one_and_delete(
            {"_id": message_id, "tenant_id": tenant_id, "user_id": user_id}
        )

    async def page(
        self,
        tenant_id: str,
        user_id: str,
        *,
        folders: list[Folder] | None = None,
        limit: int = 50,
        before: tuple[datetime, str] | None = None,
    ) -> list[Doc]:
        """Newest first; `before` is the (received_at, id) of the last item of the previous page."""
        query: Doc = {"tenant_id": tenant_id, "user_id": user_id}
        if folders:
            query["folder"] = {"$in": [f.value for f in folders]}
        if before is not None:
            at, message_id = before
            query["$or"] = [
                {"received_at": {"$lt": at}},
                {"received_at": at, "_id": {"$lt": message_id}},
            ]
        cursor = self._messages.find(query).sort([("received_at", -1), ("_id", -1)]).limit(limit)
        return [doc async for doc in cursor]

    async def counts(self, tenant_id: str, user_id: str) -> Counts:
        found = {Folder.NEW.value: 0, Folder.SAVED.value: 0, Folder.ARCHIVED.value: 0}
        urgent = 0
        cursor = self._messages.find(
            {"tenant_id": tenant_id, "user_id": user_id}, projection={"folder": 1, "urgent": 1}
        )
        async for doc in cursor:
            found[doc["folder"]] = found.get(doc["folder"], 0) + 1
            urgent += doc["folder"] == Folder.NEW.value and bool(doc.get("urgent"))
        return Counts(found["new"], found["saved"], found["archived"], urgent)

    async def due_for_deletion(
        self, tenant_id: str, policy: RetentionPolicy, now: datetime, limit: int = 500
    ) -> list[Doc]:
        """Messages of the tenant past their retention (archived ones never are)."""
        clauses: list[Doc] = [
            {"folder": Folder.NEW.value, "received_at": {"$lte": policy.unsaved_cutoff(now)}}
        ]
        saved_cutoff = policy.saved_cutoff(now)
        if saved_cutoff is not None:
            clauses.append({"folder": Folder.SAVED.value, "received_at": {"$lte": saved_cutoff}})
        cursor = self._messages.find({"tenant_id": tenant_id, "$or": clauses}).limit(limit)
        return [doc async for doc in cursor]

    async def count_all(self, tenant_id: str) -> int:
        return await self._messages.count_documents({"tenant_id": tenant_id})
