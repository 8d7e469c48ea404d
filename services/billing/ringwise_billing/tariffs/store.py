"""Tariff versions in Mongo: one document per (tenant, version, revision), never edited.

A correction of a version stores the next revision; rating always uses the latest revision
of each version, and re-rating books the difference as adjustments (ledger/rerate.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from ringwise_billing.rating.tariff import TariffBook, TariffVersion, parse_version

Doc = dict[str, Any]


class TariffConflict(Exception):
    """The revision to store exists already (a concurrent correction)."""


def version_from_doc(doc: Doc) -> TariffVersion:
    return parse_version(doc, revision=int(doc["revision"]))


class TariffStore:
    def __init__(
        self, client: AsyncMongoClient[Doc], database: str, cache_ttl_s: float = 2.0
    ) -> None:
        self._tariffs: AsyncCollection[Doc] = client[database].tariffs
        self._cache_ttl_s = cache_ttl_s
        self._books: dict[str, tuple[float, TariffBook]] = {}

    async def ensure_indexes(self) -> None:
        await self._tariffs.create_index(
            [("tenant_id", ASCENDING), ("version_id", ASCENDING), ("revision", ASCENDING)],
            unique=True,
        )

    async def put(self, tenant_id: str, version: TariffVersion, created_by: str = "") -> Doc:
        """Store a version (revision given by the caller: 1 for new, latest + 1 to correct)."""
        doc = {
            "_id": f"{tenant_id}:{version.version_id}:{version.revision}",
            "tenant_id": tenant_id,
            **version.to_doc(),
            "created_at": datetime.now(UTC),
            "created_by": created_by,
        }
        try:
            await self._tariffs.insert_one(doc)
        except DuplicateKeyError:
            raise TariffConflict(version.version_id) from None
        self._books.pop(tenant_id, None)
        return doc

    async def latest(self, tenant_id: str, version_id: str) -> Doc | None:
        docs = (
            await self._tariffs.find({"tenant_id": tenant_id, "version_id": version_id})
            .sort("revision", DESCENDING)
            .limit(1)
            .to_list()
        )
        return docs[0] if docs else None

    async def revisions(self, tenant_id: str, version_id: str) -> list[Doc]:
        return (
            await self._tariffs.find({"tenant_id": tenant_id, "version_id": version_id})
            .sort("revision", ASCENDING)
            .to_list()
        )

    async def latest_versions(self, tenant_id: str) -> list[Doc]:
        """The latest revision of each version, oldest effective date first."""
        latest: dict[str, Doc] = {}
        async for doc in self._tariffs.find({"tenant_id": tenant_id}):
            known = latest.get(doc["version_id"])
            if known is None or doc["revision"] > known["revision"]:
                latest[doc["version_id"]] = doc
        return sorted(latest.values(), key=lambda d: (d["effective_from"], d["version_id"]))

    async def book(self, tenant_id: str, *, fresh: bool = False) -> TariffBook:
        """The tenant's book; cached for a moment (rating asks for it on every batch)."""
        cached = self._books.get(tenant_id)
        now = time.monotonic()
        if cached is not None and not fresh and now - cached[0] < self._cache_ttl_s:
            return cached[1]
        book = TariffBook(version_from_doc(d) for d in await self.latest_versions(tenant_id))
        self._books[tenant_id] = (now, book)
        return book

    def forget(self, tenant_id: str) -> None:
        self._books.pop(tenant_id, None)
