"""Audit entries: inserted, never updated or deleted (no code path here does either)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from ringwise.api.v1 import api_pb2
from ringwise_kit.api import ROLE_NAMES

from ringwise_directory.common.records import Clock, Doc, PageRequest, find_page, new_id

_sequence = itertools.count()
# Never written to the history, whatever a caller passes in before/after.
SECRET_FIELDS = frozenset({"password_hash", "md5_cred", "key_hash", "password", "api_key"})


def actor_of(principal: api_pb2.Principal) -> Doc:
    return {
        "id": principal.subject_id,
        "role": ROLE_NAMES.get(principal.role, "unknown"),
        "email": principal.email,
    }


def _scrub(value: Mapping[str, Any] | None) -> Doc | None:
    if value is None:
        return None
    return {k: v for k, v in value.items() if k not in SECRET_FIELDS and k != "_id"}


class HistoryStore:
    def __init__(self, db: AsyncDatabase[Doc], clock: Clock) -> None:
        self._entries = db.history
        self._clock = clock

    async def ensure_indexes(self) -> None:
        await self._entries.create_index(
            [("tenant_id", ASCENDING), ("at", DESCENDING), ("entry_id", DESCENDING)]
        )
        await self._entries.create_index(
            [("tenant_id", ASCENDING), ("resource_type", ASCENDING), ("resource_id", ASCENDING)]
        )
        await self._entries.create_index([("entry_id", ASCENDING)], unique=True)

    async def record(
        self,
        tenant_id: str,
        actor: Doc,
        action: str,
        resource_type: str,
        resource_id: str,
        *,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        detail: str = "",
    ) -> None:
        at = self._clock()
        await self._entries.insert_one(
            {
                # Sorts by time, then by order of writing within this process; then unique.
                "entry_id": f"{at.strftime('%Y%m%d%H%M%S%f')}_{next(_sequence):012d}_{new_id('h')}",
                "tenant_id": tenant_id,
                "at": at,
                "actor": actor,
                "action": action,
                "resource_type": resource_type,
                "resource_id": resource_id,
                "before": _scrub(before),
                "after": _scrub(after),
                "detail": detail,
            }
        )

    async def page(self, query: Doc, page: PageRequest) -> tuple[list[Doc], str | None]:
        return await find_page(self._entries, query, page, "entry_id")
