"""Users in MongoDB. Emails are unique platform-wide (case-insensitive: email_key);
extensions are unique within a tenant. Credentials live apart (auth/store.py)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from ringwise_directory.auth.store import CredentialStore
from ringwise_directory.common.context import Directory
from ringwise_directory.common.extensions import ExtensionClaims, extension_taken
from ringwise_directory.common.records import (
    Doc,
    PageRequest,
    diff,
    duplicate,
    find_page,
    new_id,
    update_versioned,
)
from ringwise_directory.users.domain import email_key

HIDDEN = ("email_key",)
# Fields whose change alters what resolve_number answers for the user's numbers.
RESOLVE_FIELDS = (
    "name",
    "status",
    "ring_timeout_s",
    "smartnumber",
    "extension",
    "outbound_numbers",
    "allowed_clis",
)


def _duplicate_error(exc: DuplicateKeyError) -> Exception:
    text = str(exc)
    if "extension" in text:
        return duplicate("a user or team with this extension", "extension")
    return duplicate("a user with this email", "email")


class UserStore:
    def __init__(
        self, directory: Directory, credentials: CredentialStore, extensions: ExtensionClaims
    ) -> None:
        self._dir = directory
        self._users = directory.db.users
        self.credentials = credentials
        self._extensions = extensions

    async def ensure_indexes(self) -> None:
        await self._users.create_index(
            [("tenant_id", ASCENDING), ("user_id", ASCENDING)], unique=True
        )
        await self._users.create_index([("user_id", ASCENDING)])
        await self._users.create_index(
            [("email_key", ASCENDING)],
            unique=True,
            partialFilterExpression={"email_key": {"$type": "string"}},
        )
        await self._users.create_index(
            [("tenant_id", ASCENDING), ("extension", ASCENDING)],
            unique=True,
            partialFilterExpression={"extension": {"$type": "string"}},
        )
        await self._users.create_index([("tenant_id", ASCENDING), ("name", ASCENDING)])

    async def create(self, tenant_id: str, fields: dict[str, Any], actor: Doc) -> tuple[Doc, str]:
        """The new user and their temporary password (returned this once, never stored)."""
        now = self._dir.now()
        doc: Doc = {
            "user_id": new_id("u"),
            "tenant_id": tenant_id,
            **fields,
            "email_key": email_key(fields["email"]),
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        extension = doc.get("extension")
        if extension and not await self._extensions.claim(
            tenant_id, extension, "user", doc["user_id"]
        ):
            raise extension_taken()
        try:
            await self._users.insert_one(doc)
        except DuplicateKeyError as exc:
            await self._extensions.release(tenant_id, extension, "user", doc["user_id"])
            raise _duplicate_error(exc) from None
        password = await self.credentials.set_temporary(doc)
        await self._dir.history.record(
            tenant_id, actor, "user.created", "user", doc["user_id"], after=doc
        )
        return doc, password

    async def get(self, tenant_id: str, user_id: str) -> Doc | None:
        return await self._users.find_one({"tenant_id": tenant_id, "user_id": user_id})

    async def by_email(self, email: str) -> Doc | None:
        return await self._users.find_one({"email_key": email_key(email)})

    async def existing_ids(self, tenant_id: str, user_ids: list[str]) -> set[str]:
        docs = await self._users.find(
            {"tenant_id": tenant_id, "user_id": {"$in": user_ids}}, {"user_id": 1}
        ).to_list()
        return {d["user_id"] for d in docs}

    async def extension_taken(self, tenant_id: str, extension: str, user_id: str = "") -> bool:
        doc = await self._users.find_one(
            {"tenant_id": tenant_id, "extension": extension, "user_id": {"$ne": user_id}}
        )
        return doc is not None

    async def page(self, query: Doc, page: PageRequest) -> tuple[list[Doc], str | None]:
        return await find_page(self._users, query, page, "user_id")

    async def all(self, tenant_id: str) -> list[Doc]:
        return (
            await self._users.find({"tenant_id": tenant_id}).sort([("name", ASCENDING)]).to_list()
        )

    async def update(self, current: Doc, changes: dict[str, Any], actor: Doc, action: str) -> Doc:
        tenant_id, user_id = current["tenant_id"], current["user_id"]
        old_extension, new_extension = current.get("extension"), changes.get("extension")
        moving = "extension" in changes and new_extension != old_extension
        if (
            moving
            and new_extension
            and not await self._extensions.claim(tenant_id, new_extension, "user", user_id)
        ):
            raise extension_taken()
        try:
            updated = await self._update(current, changes)
        except Exception:
            if moving:
                await self._extensions.release(tenant_id, new_extension, "user", user_id)
            raise
        if moving:
            await self._extensions.release(tenant_id, old_extension, "user", user_id)
        before, after = diff(current, updated)
        await self._dir.history.record(
            tenant_id, actor, action, "user", user_id, before=before, after=after
        )
        return updated

    async def _update(self, current: Doc, changes: dict[str, Any]) -> Doc:
        try:
            return await update_versioned(
                self._users,
                {"tenant_id": current["tenant_id"], "user_id": current["user_id"]},
                current,
                changes,
                self._dir.now(),
            )
        except DuplicateKeyError as exc:
            raise _duplicate_error(exc) from None

    async def delete(self, current: Doc, actor: Doc) -> bool:
        result = await self._users.delete_one(
            {
                "tenant_id": current["tenant_id"],
                "user_id": current["user_id"],
                "version": current["version"],
            }
        )
        if result.deleted_count == 0:
            return False
        await self.credentials.delete_for_user(current["user_id"])
        await self._extensions.release(
            current["tenant_id"], current.get("extension"), "user", current["user_id"]
        )
        await self._dir.history.record(
            current["tenant_id"], actor, "user.deleted", "user", current["user_id"], before=current
        )
        return True

    async def upsert_fixture(self, user: Doc) -> None:
        """A dev-fixture user (no credentials: fixture users do not log in)."""
        now = self._dir.now()
        values = {k: v for k, v in user.items() if k not in ("devices", "tenant_id", "user_id")}
        defaults = {
            "role": "user",
            "status": "active",
            "language": "en",
            "outbound_numbers": [],
            "allowed_clis": [],
            "version": 1,
            "created_at": now,
        }
        await self._users.update_one(
            {"tenant_id": user["tenant_id"], "user_id": user["user_id"]},
            {
                "$set": {**values, "updated_at": now},
                "$setOnInsert": {k: v for k, v in defaults.items() if k not in values},
                # The first fixture format kept devices inside the user; they live apart now.
                "$unset": {"devices": ""},
            },
            upsert=True,
        )

    async def ensure_operator(self, email: str, password: str) -> bool:
        """Bootstrap the platform's operator admin (tenant-less) once; True if created."""
        if await self.by_email(email) is not None:
            return False
        now = self._dir.now()
        doc: Doc = {
            "user_id": new_id("op"),
            "tenant_id": "",
            "email": email,
            "email_key": email_key(email),
            "name": "Operator admin",
            "role": "operator_admin",
            "status": "active",
            "language": "en",
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self._users.insert_one(doc)
        except DuplicateKeyError:
            return False
        await self.credentials.set_password(doc, password, must_change=False)
        actor = {"id": "service:bootstrap", "role": "service", "email": ""}
        await self._dir.history.record("", actor, "user.created", "user", doc["user_id"], after=doc)
        return True
