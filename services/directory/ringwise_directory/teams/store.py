"""Teams in MongoDB (extension unique within the tenant, shared with users' extensions)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from ringwise_kit.api import ApiError

from ringwise_directory.common.context import Directory
from ringwise_directory.common.crud import TenantRecords
from ringwise_directory.common.extensions import ExtensionClaims, extension_taken
from ringwise_directory.common.records import Doc


class TeamStore(TenantRecords):
    def __init__(self, directory: Directory, extensions: ExtensionClaims) -> None:
        super().__init__(directory, "teams", "team_id", "tm")
        self._extensions = extensions

    async def create(
        self,
        tenant_id: str,
        fields: dict[str, Any],
        actor: Doc,
        on_duplicate: ApiError,
        idempotency_key: str = "",
        record_id: str | None = None,
    ) -> Doc:
        team_id = record_id or self.new_record_id(tenant_id, actor, idempotency_key)
        extension = fields.get("extension")
        # A replayed create (same Idempotency-Key) finds its own claim and its first record.
        if extension and not await self._extensions.claim(tenant_id, extension, "team", team_id):
            raise extension_taken()
        try:
            return await super().create(
                tenant_id, fields, actor, on_duplicate, idempotency_key, record_id=team_id
            )
        except Exception:
            await self._extensions.release(tenant_id, extension, "team", team_id)
            raise

    async def update(
        self,
        current: Doc,
        changes: dict[str, Any],
        actor: Doc,
        on_duplicate: ApiError | None = None,
    ) -> Doc:
        tenant_id, team_id = current["tenant_id"], current["team_id"]
        old_extension, new_extension = current.get("extension"), changes.get("extension")
        moving = "extension" in changes and new_extension != old_extension
        if (
            moving
            and new_extension
            and not await self._extensions.claim(tenant_id, new_extension, "team", team_id)
        ):
            raise extension_taken()
        try:
            updated = await super().update(current, changes, actor, on_duplicate)
        except Exception:
            if moving:
                await self._extensions.release(tenant_id, new_extension, "team", team_id)
            raise
        if moving:
            await self._extensions.release(tenant_id, old_extension, "team", team_id)
        return updated

    async def delete(self, current: Doc, actor: Doc) -> None:
        await super().delete(current, actor)
        await self._extensions.release(
            current["tenant_id"], current.get("extension"), "team", current["team_id"]
        )

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
