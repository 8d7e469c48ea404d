"""Teams in MongoDB (extension unique within the tenant, shared with users' extensions)."""

from __future__ import annotations

from pymongo import ASCENDING

from ringwise_directory.common.context import Directory
from ringwise_directory.common.crud import TenantRecords
from ringwise_directory.common.records import Doc


class TeamStore(TenantRecords):
    def __init__(self, directory: Directory) -> None:
        super().__init__(directory, "teams", "team_id", "tm")

    async def ensure_indexes(self) -> None:
        await super().ensure_indexes()
        await self.collection.create_index(
            [("tenant_id", ASCENDING), ("extension", ASCENDING)], unique=True
        )
        await self.collection.create_index([("tenant_id", ASCENDING), ("members", ASCENDING)])

    async def extension_taken(self, tenant_id: str, extension: str, team_id: str = "") -> bool:
        doc = await self.collection.find_one(
            {"tenant_id": tenant_id, "extension": extension, "team_id": {"$ne": team_id}}
        )
        return doc is not None

    async def remove_member(self, tenant_id: str, user_id: str, actor: Doc) -> None:
        for team in await self.collection.find(
            {"tenant_id": tenant_id, "members": user_id}
        ).to_list():
            members = [m for m in team.get("members", []) if m != user_id]
            await self.update(team, {"members": members}, actor)

    async def exists(self, tenant_id: str, team_id: str, kind: str | None = None) -> bool:
        query: Doc = {"tenant_id": tenant_id, "team_id": team_id}
        if kind:
            query["kind"] = kind
        return await self.collection.find_one(query, {"_id": 1}) is not None
