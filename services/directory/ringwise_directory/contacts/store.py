"""Contacts in MongoDB."""

from __future__ import annotations

from pymongo import ASCENDING

from ringwise_directory.common.context import Directory
from ringwise_directory.common.crud import TenantRecords


class ContactStore(TenantRecords):
    def __init__(self, directory: Directory) -> None:
        super().__init__(directory, "contacts", "contact_id", "c")

    async def ensure_indexes(self) -> None:
        await super().ensure_indexes()
        await self.collection.create_index([("tenant_id", ASCENDING), ("owner_id", ASCENDING)])
