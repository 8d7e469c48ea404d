"""Tenants in MongoDB: one document per tenant, keyed by tenant_id."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from ringwise_directory.common.context import Directory
from ringwise_directory.common.records import (
    Doc,
    PageRequest,
    diff,
    duplicate,
    find_page,
    new_id,
    update_versioned,
)


class TenantStore:
    def __init__(self, directory: Directory) -> None:
        self._dir = directory
        self._tenants = directory.db.tenants

    async def ensure_indexes(self) -> None:
        await self._tenants.create_index([("tenant_id", ASCENDING)], unique=True)
        await self._tenants.create_index([("name", ASCENDING)])

    async def create(self, fields: dict[str, Any], actor: Doc) -> Doc:
        now = self._dir.now()
        doc: Doc = {
            "tenant_id": fields.pop("tenant_id", None) or new_id("t"),
            **fields,
            "status": "active",
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self._tenants.insert_one(doc)
        except DuplicateKeyError:
            raise duplicate("a tenant with this tenant_id", "tenant_id") from None
        await self._dir.history.record(
            doc["tenant_id"], actor, "tenant.created", "tenant", doc["tenant_id"], after=doc
        )
        return doc

    async def get(self, tenant_id: str) -> Doc | None:
        return await self._tenants.find_one({"tenant_id": tenant_id})

    async def page(self, query: Doc, page: PageRequest) -> tuple[list[Doc], str | None]:
        return await find_page(self._tenants, query, page, "tenant_id")

    async def update(self, current: Doc, changes: dict[str, Any], actor: Doc, action: str) -> Doc:
        tenant_id = current["tenant_id"]
        updated = await update_versioned(
            self._tenants, {"tenant_id": tenant_id}, current, changes, self._dir.now()
        )
        before, after = diff(current, updated)
        await self._dir.history.record(
            tenant_id, actor, action, "tenant", tenant_id, before=before, after=after
        )
        return updated

    async def exists(self, tenant_id: str) -> bool:
        return bool(tenant_id) and (
            await self._tenants.find_one({"tenant_id": tenant_id}, {"_id": 1}) is not None
        )

    async def upsert_fixture(self, tenant: Doc) -> None:
        now = self._dir.now()
        await self._tenants.update_one(
            {"tenant_id": tenant["tenant_id"]},
            {
                "$set": {k: v for k, v in tenant.items() if k != "tenant_id"},
                "$setOnInsert": {
                    k: v
                    for k, v in {
                        "status": "active",
                        "language": "en",
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }.items()
                    if k not in tenant
                },
            },
            upsert=True,
        )
