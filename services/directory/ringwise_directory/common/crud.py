"""A tenant-scoped collection of versioned records with audit history (teams, contacts...)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError
from ringwise_kit.api import ApiError

from ringwise_directory.common.context import Directory
from ringwise_directory.common.records import (
    Doc,
    PageRequest,
    diff,
    find_page,
    new_id,
    replayable_id,
    update_versioned,
)


class TenantRecords:
    def __init__(self, directory: Directory, collection: str, key: str, prefix: str) -> None:
        self._dir = directory
        self.collection = directory.db[collection]
        self.key = key
        self.prefix = prefix
        self.kind = collection.rstrip("s")

    async def ensure_indexes(self) -> None:
        await self.collection.create_index(
            [("tenant_id", ASCENDING), (self.key, ASCENDING)], unique=True
        )
        await self.collection.create_index([("tenant_id", ASCENDING), ("name", ASCENDING)])

    async def create(
        self,
        tenant_id: str,
        fields: dict[str, Any],
        actor: Doc,
        on_duplicate: ApiError,
        idempotency_key: str = "",
        record_id: str | None = None,
    ) -> Doc:
        """Insert a new record; with an idempotency_key, a retry returns the first one.
        record_id: an id the caller already chose (from new_record_id)."""
        now = self._dir.now()
        record_id = record_id or self.new_record_id(tenant_id, actor, idempotency_key)
        doc: Doc = {
            self.key: record_id,
            "tenant_id": tenant_id,
            **fields,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        if idempotency_key:
            doc["idempotency_key"] = idempotency_key
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            if idempotency_key:
                first = await self.get(tenant_id, record_id)
                if first is not None and first.get("idempotency_key") == idempotency_key:
                    return first
            raise on_duplicate from None
        await self._dir.history.record(
            tenant_id, actor, f"{self.kind}.created", self.kind, doc[self.key], after=doc
        )
        return doc

    def new_record_id(self, tenant_id: str, actor: Doc, idempotency_key: str = "") -> str:
        if idempotency_key:
            return replayable_id(self.prefix, tenant_id, str(actor["id"]), idempotency_key)
        return new_id(self.prefix)

    async def get(self, tenant_id: str, record_id: str) -> Doc | None:
        return await self.collection.find_one({"tenant_id": tenant_id, self.key: record_id})

    async def page(self, query: Doc, page: PageRequest) -> tuple[list[Doc], str | None]:
        if "tenant_id" not in query:
            raise ValueError("a tenant's records are always queried with its tenant_id")
        return await find_page(self.collection, query, page, self.key)

    async def update(
        self,
        current: Doc,
        changes: dict[str, Any],
        actor: Doc,
        on_duplicate: ApiError | None = None,
    ) -> Doc:
        try:
            updated = await update_versioned(
                self.collection,
                {"tenant_id": current["tenant_id"], self.key: current[self.key]},
                current,
                changes,
                self._dir.now(),
            )
        except DuplicateKeyError:
            if on_duplicate is None:
                raise
            raise on_duplicate from None
        before, after = diff(current, updated)
        await self._dir.history.record(
            current["tenant_id"],
            actor,
            f"{self.kind}.updated",
            self.kind,
            current[self.key],
            before=before,
            after=after,
        )
        return updated

    async def delete(self, current: Doc, actor: Doc) -> None:
        result = await self.collection.delete_one(
            {
                "tenant_id": current["tenant_id"],
                self.key: current[self.key],
                "version": current["version"],
            }
        )
        if result.deleted_count == 0:
            raise ApiError(412, "Precondition Failed", "the resource changed meanwhile; retry")
        await self._dir.history.record(
            current["tenant_id"],
            actor,
            f"{self.kind}.deleted",
            self.kind,
            current[self.key],
            before=current,
        )
