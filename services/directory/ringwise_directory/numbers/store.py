"""Directory data in MongoDB (plain PyMongo async driver: production MongoDB needs no change)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from ringwise.directory.v1 import resolve_pb2

Doc = dict[str, Any]
Reply = resolve_pb2.ResolveNumberReply


class DirectoryStore:
    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        self._db: AsyncDatabase[Doc] = client[database]

    async def ensure_indexes(self) -> None:
        await self._db.numbers.create_index([("number", ASCENDING)], unique=True)
        await self._db.users.create_index(
            [("tenant_id", ASCENDING), ("user_id", ASCENDING)], unique=True
        )
        await self._db.tenants.create_index([("tenant_id", ASCENDING)], unique=True)

    async def next_version(self) -> int:
        counter = await self._db.counters.find_one_and_update(
            {"_id": "version"},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(counter["value"]) if counter else 1

    async def upsert_tenant(self, tenant: Doc) -> None:
        await self._db.tenants.update_one(
            {"tenant_id": tenant["tenant_id"]}, {"$set": tenant}, upsert=True
        )

    async def upsert_user(self, user: Doc) -> None:
        await self._db.users.update_one(
            {"tenant_id": user["tenant_id"], "user_id": user["user_id"]},
            {"$set": user},
            upsert=True,
        )

    async def upsert_number(self, number: Doc, version: int) -> bool:
        """True when the number's routing data changed (caches must drop it)."""
        before = await self._db.numbers.find_one_and_update(
            {"number": number["number"]},
            {"$set": {**number, "version": version}},
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        if before is None:
            return True
        return any(before.get(k) != v for k, v in number.items())

    async def resolve(self, number: str) -> Reply:
        assignment = await self._db.numbers.find_one({"number": number})
        if assignment is None or not assignment.get("user_id"):
            return Reply(status=Reply.STATUS_NOT_FOUND)
        user = await self._db.users.find_one(
            {"tenant_id": assignment["tenant_id"], "user_id": assignment["user_id"]}
        )
        if user is None or user.get("status", "active") != "active":
            return Reply(status=Reply.STATUS_NOT_FOUND)
        return Reply(
            status=Reply.STATUS_FOUND,
            tenant_id=assignment["tenant_id"],
            user_id=user["user_id"],
            user_name=user.get("name", ""),
            devices=[
                resolve_pb2.Device(
                    device_id=d["device_id"],
                    kind=d.get("kind", "sip"),
                    dial_string=d.get("dial_string", ""),
                    label=d.get("label", ""),
                )
                for d in user.get("devices", [])
            ],
            ring_timeout_s=int(user.get("ring_timeout_s", 0)),
            version=int(assignment.get("version", 0)),
        )
