"""CDR storage: one document per call, keyed by call_id, written at most once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError
from ringwise.events.v1 import call_pb2
from ringwise_kit.events import from_timestamp

Doc = dict[str, Any]
DUPLICATE_KEY = 11000


def cdr_document(event: call_pb2.CallEnded, stored_at: datetime) -> Doc:
    header = event.header
    return {
        "_id": header.call_id,
        "event_id": header.event_id,
        "tenant_id": header.tenant_id,
        "direction": call_pb2.Direction.Name(event.direction),
        "from_number": event.from_number,
        "to_number": event.to_number,
        "user_id": event.user_id,
        "device_id": event.device_id,
        "started_at": from_timestamp(event.started_at),
        "answered_at": from_timestamp(event.answered_at),
        "ended_at": from_timestamp(event.ended_at),
        "billable_seconds": event.billable_seconds,
        "billable_ms": event.billable_ms,
        "duration_ms": event.duration_ms,
        "disposition": call_pb2.Disposition.Name(event.disposition),
        "hangup_cause": event.hangup_cause,
        "hangup_by": event.hangup_by,
        "stored_at": stored_at,
    }


class CdrStore:
    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        self._cdrs: AsyncCollection[Doc] = client[database].cdrs

    async def ensure_indexes(self) -> None:
        await self._cdrs.create_index([("tenant_id", ASCENDING), ("ended_at", ASCENDING)])
        await self._cdrs.create_index([("ended_at", ASCENDING), ("_id", ASCENDING)])
        await self._cdrs.create_index([("tenant_id", ASCENDING), ("started_at", ASCENDING)])

    async def insert_once(self, doc: Doc) -> bool:
        """True if stored now, False if this call's CDR was already there (a redelivery)."""
        try:
            await self._cdrs.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def insert_many_once(self, docs: list[Doc]) -> set[str]:
        """Insert a batch in one round trip; returns the call ids stored now (the others were
        there already). Any error other than a duplicate key is raised."""
        try:
            await self._cdrs.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            duplicates = {docs[error["index"]]["_id"] for error in errors}
            return {doc["_id"] for doc in docs} - duplicates
        return {doc["_id"] for doc in docs}

    async def get(self, call_id: str) -> Doc | None:
        return await self._cdrs.find_one({"_id": call_id})

    async def search(
        self,
        tenant_id: str,
        filters: Doc,
        *,
        before: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[Doc]:
        """The tenant's calls matching `filters` (a Mongo query), newest start first;
        `before` is the (started_at, call_id) of the last item already seen."""
        query: Doc = {**filters, "tenant_id": tenant_id}
        if before is not None:
            started_at, call_id = before
            query["$and"] = [
                {
                    "$or": [
                        {"started_at": {"$lt": started_at}},
                        {"started_at": started_at, "_id": {"$lt": call_id}},
                    ]
                }
            ]
        cursor = self._cdrs.find(query).sort([("started_at", DESCENDING), ("_id", DESCENDING)])
        return await cursor.limit(limit).to_list(length=limit)

    async def started_between(self, tenant_id: str, since: datetime, until: datetime) -> list[Doc]:
        """The tenant's calls that started in [since, until)."""
        query = {"tenant_id": tenant_id, "started_at": {"$gte": since, "$lt": until}}
        return await self._cdrs.find(query).sort("started_at", ASCENDING).to_list()

    async def list(
        self,
        *,
        tenant_id: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Doc]:
        """Oldest first; `after` is the (ended_at, call_id) of the last item already seen."""
        query: Doc = {}
        if tenant_id is not None:
            query["tenant_id"] = tenant_id
        if after is not None:
            ended_at, call_id = after
            query["$or"] = [
                {"ended_at": {"$gt": ended_at}},
                {"ended_at": ended_at, "_id": {"$gt": call_id}},
            ]
        cursor = self._cdrs.find(query).sort([("ended_at", ASCENDING), ("_id", ASCENDING)])
        return await cursor.limit(limit).to_list(length=limit)

    async def count(self, tenant_id: str | None = None) -> int:
        query = {} if tenant_id is None else {"tenant_id": tenant_id}
        return await self._cdrs.count_documents(query)
