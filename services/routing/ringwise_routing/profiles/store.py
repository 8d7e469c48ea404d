"""Routing profiles and tenant routing policies in Mongo (database RINGWISE_ROUTING_DB).

- `profiles`: one record per (tenant_id, user_id) (unique index), with the profile document
  (profiles/document.py), a version (1, 2, ...: the API's ETag and the optimistic lock of
  every write), when and from where it was last changed.
- `policies`: one record per tenant_id (unique index), the same way.

Every query is scoped by tenant. A write names the version it read (0 = "there is none yet")
and fails with VersionConflict when someone else wrote meanwhile. Removing a profile keeps
its record with no document and the next version, so an ETag read before the removal can
never match a profile created after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from ringwise_routing.profiles.document import divert_references

Doc = dict[str, Any]


class VersionConflict(Exception):
    """The record changed since it was read (or was created meanwhile)."""


@dataclass(frozen=True)
class Stored:
    doc: Doc | None  # None: nothing stored (the defaults apply)
    version: int  # 0: never stored
    updated_at: datetime | None = None
    origin: str = ""
    actor: str = ""  # who made the last change (the API caller's subject id; "" = the user)


NOTHING = Stored(doc=None, version=0)


def _stored(record: Doc | None) -> Stored:
    if record is None:
        return NOTHING
    return Stored(
        doc=record["doc"],
        version=int(record["version"]),
        updated_at=record.get("updated_at"),
        origin=record.get("origin", ""),
        actor=record.get("actor", ""),
    )


class ProfileStore:
    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        db = client[database]
        self.profiles: AsyncCollection[Doc] = db["profiles"]
        self.policies: AsyncCollection[Doc] = db["policies"]

    async def ensure_indexes(self) -> None:
        await self.profiles.create_index(
            [("tenant_id", ASCENDING), ("user_id", ASCENDING)], unique=True
        )
        await self.policies.create_index([("tenant_id", ASCENDING)], unique=True)

    # -- profiles --------------------------------------------------------------------------

    async def get_profile(self, tenant_id: str, user_id: str) -> Stored:
        return _stored(
            await self.profiles.find_one({"tenant_id": tenant_id, "user_id": user_id}, {"_id": 0})
        )

    async def diverting_profiles(self, tenant_id: str) -> dict[str, Doc]:
        """The tenant's stored profiles that send calls to other users (the only ones a
        divert loop can run through), by user id."""
        cursor = self.profiles.find(
            {"tenant_id": tenant_id, "diverts_to.0": {"$exists": True}},
            {"_id": 0, "user_id": 1, "doc": 1},
        )
        return {record["user_id"]: record["doc"] async for record in cursor}

    async def users_of_states(self, tenant_id: str, names: Iterable[str]) -> dict[str, list[str]]:
        """Which of the tenant's stored profiles have any of the availability states `names`
        (user id -> those states)."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        cursor = self.profiles.find(
            {
                "tenant_id": tenant_id,
                "$or": [{f"doc.states.{name}": {"$exists": True}} for name in wanted],
            },
            {"_id": 0, "user_id": 1, "doc.states": 1},
        )
        return {
            record["user_id"]: [n for n in wanted if n in record["doc"]["states"]]
            async for record in cursor
        }

    async def put_profile(
        self,
        tenant_id: str,
        user_id: str,
        doc: Doc | None,
        expected_version: int,
        origin: str,
        actor: str = "",
    ) -> int:
        """Store `doc` (None: remove it, the default applies again) if the stored version is
        still `expected_version`; the new version."""
        users, _ = divert_references(doc) if doc is not None else ([], [])
        return await _put(
            self.profiles,
            {"tenant_id": tenant_id, "user_id": user_id},
            doc,
            expected_version,
            origin,
            actor,
            # Whom it diverts to, so loop checks read only the profiles that divert.
            {"diverts_to": sorted({target for _, target in users})},
        )

    # -- tenant policies ---------------------------------------------------------------------

    async def get_policy(self, tenant_id: str) -> Stored:
        return _stored(await self.policies.find_one({"tenant_id": tenant_id}, {"_id": 0}))

    async def put_policy(
        self, tenant_id: str, doc: Doc, expected_version: int, origin: str, actor: str = ""
    ) -> int:
        return await _put(
            self.policies, {"tenant_id": tenant_id}, doc, expected_version, origin, actor
        )


async def _put(
    collection: AsyncCollection[Doc],
    key: Doc,
    doc: Doc | None,
    expected_version: int,
    origin: str,
    actor: str = "",
    derived: Doc | None = None,
) -> int:
    """Write `doc` (None = remove it) over `expected_version`; the new version."""
    now = datetime.now(UTC)
    if expected_version == 0:
        try:
            await collection.insert_one(
                {
                    # The key is the _id too: unique even before the indexes exist (they are
                    # made in the background at start).
                    "_id": ":".join(key.values()),
                    **key,
                    "doc": doc,
                    "version": 1,
                    "updated_at": now,
                    "origin": origin,
                    "actor": actor,
                    **(derived or {}),
                }
            )
        except DuplicateKeyError:
            raise VersionConflict(f"{key} was created meanwhile") from None
        return 1
    version = expected_version + 1
    result = await collection.update_one(
        {**key, "version": expected_version},
        {
            "$set": {
                "doc": doc,
                "version": version,
                "updated_at": now,
                "origin": origin,
                "actor": actor,
                **(derived or {}),
            }
        },
    )
    if result.matched_count != 1:
        raise VersionConflict(f"{key} is no longer at version {expected_version}")
    return version
