"""Recording metadata in Mongo: one document per recording, keyed by recording id.

The document also carries the archive's progress (state), so a redelivered event after a crash
resumes where the previous attempt stopped instead of storing the recording twice:

    uploading  -> a multipart upload is open (upload_id); parts are being sent
    completing -> every part is sent; ETags and hashes are recorded; complete may have run
    uploaded   -> the object version exists (version_id)
    verified   -> size, ETag, lock mode and retain-until checked against what we sent
    archived   -> deleted from Asterisk; the recording lives only in the archive now
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Doc = dict[str, Any]

UPLOADING = "uploading"
COMPLETING = "completing"
UPLOADED = "uploaded"
VERIFIED = "verified"
ARCHIVED = "archived"
# On-demand recordings nobody asked to keep: deleted from Asterisk, never archived.
DISCARDED = "discarded"
STATES = (UPLOADING, COMPLETING, UPLOADED, VERIFIED, ARCHIVED, DISCARDED)


class RecordingStore:
    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        db = client[database]
        self.recordings: AsyncCollection[Doc] = db.recordings
        self.tenants: AsyncCollection[Doc] = db.tenant_settings
        self.keep_requests: AsyncCollection[Doc] = db.keep_requests

    async def ensure_indexes(self) -> None:
        await self.recordings.create_index([("tenant_id", ASCENDING), ("started_at", DESCENDING)])
        await self.recordings.create_index([("tenant_id", ASCENDING), ("parties", ASCENDING)])
        await self.recordings.create_index([("tenant_id", ASCENDING), ("user_id", ASCENDING)])
        await self.recordings.create_index([("tenant_id", ASCENDING), ("team_id", ASCENDING)])
        await self.recordings.create_index([("state", ASCENDING), ("retain_until", ASCENDING)])

    async def get(self, recording_id: str) -> Doc | None:
        return await self.recordings.find_one({"_id": recording_id})

    async def request_keep(self, request: Doc) -> None:
        """Remember that someone asked to keep a call's on-demand recording (first ask wins)."""
        with contextlib.suppress(DuplicateKeyError):  # asked twice: the first ask stands
            await self.keep_requests.insert_one(request)

    async def keep_requests_of(self, tenant_id: str, call_id: str) -> list[Doc]:
        cursor = self.keep_requests.find({"tenant_id": tenant_id, "call_id": call_id})
        return await cursor.to_list(length=100)

    async def recordings_of_call(self, tenant_id: str, call_id: str) -> list[Doc]:
        cursor = self.recordings.find({"tenant_id": tenant_id, "call_id": call_id})
        return await cursor.to_list(length=100)

    async def claim(self, recording_id: str, owner: str, now: datetime, lease: timedelta) -> bool:
        """Take (or renew) the recording's lease; False while another owner holds it."""
        result = await self.recordings.update_one(
            {
                "_id": recording_id,
                "$or": [
                    {"lease_owner": owner},
                    {"lease_until": {"$exists": False}},
                    {"lease_until": None},
                    {"lease_until": {"$lt": now}},
                ],
            },
            {"$set": {"lease_owner": owner, "lease_until": now + lease}},
        )
        return result.matched_count == 1

    async def release(self, recording_id: str, owner: str) -> None:
        await self.recordings.update_one(
            {"_id": recording_id, "lease_owner": owner},
            {"$set": {"lease_until": None, "lease_owner": None}},
        )

    async def get_in_tenant(self, tenant_id: str, recording_id: str) -> Doc | None:
        return await self.recordings.find_one({"_id": recording_id, "tenant_id": tenant_id})

    async def create(self, doc: Doc) -> bool:
        """Insert a new recording's document; False if it exists already (a redelivery)."""
        try:
            await self.recordings.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def update(self, recording_id: str, changes: Doc) -> Doc | None:
        return await self.recordings.find_one_and_update(
            {"_id": recording_id}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )

    async def search(
        self,
        tenant_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        party: str | None = None,
        user_id: str | None = None,
        team_id: str | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
        only_user: str | None = None,
        only_teams: list[str] | None = None,
    ) -> list[Doc]:
        """Archived recordings of a tenant, newest first. only_user / only_teams restrict the
        result to what a user or supervisor is entitled to, whatever the filters say."""
        query: Doc = {"tenant_id": tenant_id, "state": ARCHIVED}
        scope: list[Doc] = []
        if only_user is not None:
            scope.append({"user_id": only_user})
        if only_teams is not None:
            scope.append({"team_id": {"$in": only_teams}})
        if scope:
            query["$and"] = [{"$or": scope}]
        started: Doc = {}
        if since is not None:
            started["$gte"] = since
        if until is not None:
            started["$lt"] = until
        if started:
            query["started_at"] = started
        if party:
            query["parties"] = party
        if user_id:
            query["user_id"] = user_id
        if team_id:
            query["team_id"] = team_id
        if after is not None:
            at, recording_id = after
            query.setdefault("$and", []).append(
                {
                    "$or": [
                        {"started_at": {"$lt": at}},
                        {"started_at": at, "_id": {"$lt": recording_id}},
                    ]
                }
            )
        cursor = self.recordings.find(query).sort([("started_at", DESCENDING), ("_id", DESCENDING)])
        return await cursor.limit(limit).to_list(length=limit)

    async def sample_archived(self, size: int) -> list[Doc]:
        pipeline: list[Doc] = [{"$match": {"state": ARCHIVED}}, {"$sample": {"size": size}}]
        cursor = await self.recordings.aggregate(pipeline)
        return await cursor.to_list(length=size)

    async def expired(self, now: datetime, limit: int = 500) -> list[Doc]:
        query = {"state": ARCHIVED, "retain_until": {"$lte": now}, "legal_hold": {"$ne": True}}
        return await self.recordings.find(query).limit(limit).to_list(length=limit)

    async def delete(self, recording_id: str) -> bool:
        result = await self.recordings.delete_one({"_id": recording_id})
        return result.deleted_count == 1

    # -- per-tenant settings (encryption mode, recording policy) --------------------------------

    async def tenant_settings(self, tenant_id: str) -> Doc:
        return await self.tenants.find_one({"_id": tenant_id}) or {"_id": tenant_id}

    async def put_tenant_settings(
        self, tenant_id: str, changes: Doc, if_version: int | None = None
    ) -> Doc | None:
        """Replace the settings (version + 1). With if_version, only if the stored version is
        that one (optimistic concurrency); None when it is not."""
        query: Doc = {"_id": tenant_id}
        if if_version is not None:
            # Version 0: never written (no document, or one without a version yet).
            query["version"] = {"$in": [0, None]} if if_version == 0 else if_version
        try:
            return await self.tenants.find_one_and_update(
                query,
                {"$set": changes, "$inc": {"version": 1}},
                upsert=if_version in (None, 0),
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # two first writers at once: the other one won
            return None
