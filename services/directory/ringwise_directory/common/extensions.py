"""Extensions are unique within a tenant across users and teams.

Users and teams live in two collections, so a unique index on each cannot stop a user and a
team from taking the same extension at the same moment. Each holder first claims the extension
in one collection with a unique (tenant_id, extension) index. A claim left behind by a crash
(its holder no longer has that extension a minute later) is taken over instead of blocking the
extension forever.
"""

from __future__ import annotations

from datetime import timedelta

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from ringwise_directory.common.context import Directory
from ringwise_directory.common.records import Doc, duplicate

# Holder kind -> (collection, id field).
HOLDERS = {"user": ("users", "user_id"), "team": ("teams", "team_id")}
# A claim younger than this may belong to a creation still under way: never taken over.
STALE_AFTER = timedelta(seconds=60)


def extension_taken() -> Exception:
    return duplicate("a user or team with this extension", "extension")


class ExtensionClaims:
    def __init__(self, directory: Directory) -> None:
        self._dir = directory
        self._db = directory.db
        self._claims = directory.db.extensions

    async def ensure_indexes(self) -> None:
        await self._claims.create_index(
            [("tenant_id", ASCENDING), ("extension", ASCENDING)], unique=True
        )

    async def claim(self, tenant_id: str, extension: str, kind: str, holder_id: str) -> bool:
        """True when the extension is now this holder's (or already was)."""
        holder = f"{kind}:{holder_id}"
        try:
            await self._claims.insert_one(
                {
                    "tenant_id": tenant_id,
                    "extension": extension,
                    "holder": holder,
                    "claimed_at": self._dir.now(),
                }
            )
            return True
        except DuplicateKeyError:
            pass
        current = await self._claims.find_one({"tenant_id": tenant_id, "extension": extension})
        if current is None:  # released meanwhile: try once more
            return await self.claim(tenant_id, extension, kind, holder_id)
        if current["holder"] == holder:
            return True
        fresh = current.get("claimed_at") and current["claimed_at"] > self._dir.now() - STALE_AFTER
        if fresh or await self._holds(tenant_id, extension, current["holder"]):
            return False
        taken = await self._claims.update_one(
            {"_id": current["_id"], "holder": current["holder"]},
            {"$set": {"holder": holder, "claimed_at": self._dir.now()}},
        )
        return taken.modified_count == 1

    async def release(
        self, tenant_id: str, extension: str | None, kind: str, holder_id: str
    ) -> None:
        if extension:
            await self._claims.delete_one(
                {"tenant_id": tenant_id, "extension": extension, "holder": f"{kind}:{holder_id}"}
            )

    async def _holds(self, tenant_id: str, extension: str, holder: str) -> bool:
        kind, _, holder_id = holder.partition(":")
        collection, key = HOLDERS[kind]
        query: Doc = {"tenant_id": tenant_id, key: holder_id, "extension": extension}
        return await self._db[collection].find_one(query, {"_id": 1}) is not None
