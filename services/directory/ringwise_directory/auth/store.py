"""Credentials and API keys in MongoDB, and the authenticate request of the gateway.

Passwords are argon2id hashes (argon2-cffi), API keys are stored as their sha256. Neither a
password nor a key is ever logged or written to the history. Hashing runs in a worker thread:
argon2 is deliberately slow and must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo import ASCENDING, ReturnDocument
from ringwise.api.v1 import api_pb2
from ringwise.directory.v1 import auth_pb2
from ringwise_kit.api import ROLES_BY_NAME
from ringwise_kit.logs import get_logger

from ringwise_directory.auth.domain import (
    API_KEY_PREFIX,
    key_hash,
    lockout_seconds,
    new_api_key,
    password_problem,
    temporary_password,
)
from ringwise_directory.common.context import Directory
from ringwise_directory.common.records import Doc, PageRequest, find_page, new_id
from ringwise_directory.users.domain import email_key

log = get_logger(__name__)
Reply = auth_pb2.AuthenticateReply
AUTH_ACTOR = {"id": "service:auth", "role": "service", "email": ""}


class CredentialStore:
    def __init__(self, directory: Directory, hasher: PasswordHasher | None = None) -> None:
        self._dir = directory
        self._db = directory.db
        self._credentials = directory.db.credentials
        self._keys = directory.db.api_keys
        self._hasher = hasher or PasswordHasher()
        # Generated temporary passwords carry over 80 random bits: guessing them is hopeless at any
        # hashing speed, so they get a light argon2 (bulk imports stay fast). A password a
        # person chooses always gets the full cost.
        self._light_hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
        self._dummy_hash: str | None = None
        # Each argon2 run holds its memory cost (19 MiB by default): bound how many run at once.
        self._hash_slots = asyncio.Semaphore(max(1, (os.cpu_count() or 2)))

    async def ensure_indexes(self) -> None:
        await self._credentials.create_index([("email_key", ASCENDING)], unique=True)
        await self._credentials.create_index([("user_id", ASCENDING)], unique=True)
        await self._keys.create_index([("key_hash", ASCENDING)], unique=True)
        await self._keys.create_index(
            [("tenant_id", ASCENDING), ("key_id", ASCENDING)], unique=True
        )

    async def _hash(self, password: str, *, generated: bool = False) -> str:
        hasher = self._light_hasher if generated else self._hasher
        async with self._hash_slots:
            return await asyncio.to_thread(hasher.hash, password)

    async def _verify(self, stored: str, password: str) -> bool:
        async with self._hash_slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, stored, password)
            except (VerificationError, InvalidHashError):
                return False

    async def set_temporary(self, user: Doc) -> str:
        """A new generated password the user must change at first login; shown once."""
        password = temporary_password()
        await self._credentials.update_one(
            {"user_id": user["user_id"]},
            {
                "$set": {
                    "tenant_id": user["tenant_id"],
                    "email_key": user["email_key"],
                    "password_hash": await self._hash(password, generated=True),
                    "must_change": True,
                    "failures": 0,
                    "locked_until": None,
                    "updated_at": self._dir.now(),
                }
            },
            upsert=True,
        )
        return password

    async def set_password(self, user: Doc, password: str, *, must_change: bool) -> None:
        await self._credentials.update_one(
            {"user_id": user["user_id"]},
            {
                "$set": {
                    "tenant_id": user["tenant_id"],
                    "email_key": user["email_key"],
                    "password_hash": await self._hash(password),
                    "must_change": must_change,
                    "failures": 0,
                    "locked_until": None,
                    "updated_at": self._dir.now(),
                }
            },
            upsert=True,
        )

    async def delete_for_user(self, user_id: str) -> None:
        await self._credentials.delete_one({"user_id": user_id})

    # -- authenticate -------------------------------------------------------------------------

    async def authenticate(self, req: auth_pb2.AuthenticateRequest) -> Reply:
        which = req.WhichOneof("credential")
        if which == "password":
            return await self._password_login(req.password, req.client_address)
        if which == "api_key":
            return await self._api_key_login(req.api_key)
        if which == "user_id":
            return await self._recheck(req.user_id)
        return Reply(status=Reply.STATUS_INVALID, detail="no credential given")

    async def _user_state(self, user: Doc | None) -> Reply | None:
        """DISABLED when the user or their tenant is not active (None when all is well)."""
        if user is None:
            return Reply(status=Reply.STATUS_INVALID)
        if user.get("status", "active") != "active":
            return Reply(status=Reply.STATUS_DISABLED, detail="the user is not active")
        if user.get("tenant_id"):
            tenant = await self._db.tenants.find_one({"tenant_id": user["tenant_id"]})
            if tenant is None or tenant.get("status", "active") != "active":
                return Reply(status=Reply.STATUS_DISABLED, detail="the tenant is not active")
        return None

    def _principal(self, user: Doc, method: str) -> api_pb2.Principal:
        return api_pb2.Principal(
            subject_id=user["user_id"],
            tenant_id=user.get("tenant_id") or "",
            role=api_pb2.Role.ValueType(
                ROLES_BY_NAME.get(user.get("role", "user"), api_pb2.ROLE_USER)
            ),
            email=user.get("email", ""),
            auth_method=method,
        )

    async def _password_login(self, cred: auth_pb2.PasswordCredential, client: str) -> Reply:
        key = email_key(cred.email)
        stored = await self._credentials.find_one({"email_key": key}) if key else None
        now = self._dir.now()
        if stored is None:
            # Same work as a real check, so timing does not tell which emails exist.
            if self._dummy_hash is None:
                self._dummy_hash = await self._hash("not-a-real-password")
            await self._verify(self._dummy_hash, cred.password or "x")
            await self._dir.history.record(
                "",
                AUTH_ACTOR,
                "auth.failed",
                "login",
                key[:254],
                detail=f"unknown username from {client or '-'}",
            )
            return Reply(status=Reply.STATUS_INVALID)
        locked_until = stored.get("locked_until")
        if locked_until is not None and locked_until > now:
            return Reply(
                status=Reply.STATUS_LOCKED,
                retry_after_s=max(1, int((locked_until - now).total_seconds() + 0.999)),
            )
        if not await self._verify(stored["password_hash"], cred.password):
            return await self._failed(stored, client)
        user = await self._db.users.find_one({"user_id": stored["user_id"]})
        refused = await self._user_state(user)
        if refused is not None or user is None:
            return refused or Reply(status=Reply.STATUS_INVALID)
        changes: Doc = {"failures": 0, "locked_until": None, "last_login_at": now}
        if cred.new_password:
            problem = password_problem(cred.new_password, user.get("email", ""))
            if problem is None and cred.new_password == cred.password:
                problem = "must differ from the current password"
            if problem is not None:
                await self._credentials.update_one({"_id": stored["_id"]}, {"$set": changes})
                return Reply(status=Reply.STATUS_WEAK_PASSWORD, detail=problem)
            changes |= {
                "password_hash": await self._hash(cred.new_password),
                "must_change": False,
                "updated_at": now,
            }
            await self._dir.history.record(
                user["tenant_id"],
                {
                    "id": user["user_id"],
                    "role": user.get("role", ""),
                    "email": user.get("email", ""),
                },
                "auth.password_changed",
                "user",
                user["user_id"],
            )
        elif stored.get("must_change"):
            await self._credentials.update_one({"_id": stored["_id"]}, {"$set": changes})
            return Reply(
                status=Reply.STATUS_MUST_CHANGE_PASSWORD,
                detail="a temporary password: log in again with new_password",
            )
        elif self._hasher.check_needs_rehash(stored["password_hash"]):
            changes["password_hash"] = await self._hash(cred.password)
        await self._credentials.update_one({"_id": stored["_id"]}, {"$set": changes})
        return Reply(status=Reply.STATUS_OK, principal=self._principal(user, "password"))

    async def _failed(self, stored: Doc, client: str) -> Reply:
        now = self._dir.now()
        updated = await self._credentials.find_one_and_update(
            {"_id": stored["_id"]},
            {"$inc": {"failures": 1}},
            return_document=ReturnDocument.AFTER,
        )
        failures = int((updated or stored).get("failures", 1))
        lock_s = lockout_seconds(failures)
        actor = {"id": stored["user_id"], "role": "", "email": stored["email_key"]}
        await self._dir.history.record(
            stored.get("tenant_id", ""),
            actor,
            "auth.failed",
            "user",
            stored["user_id"],
            detail=f"wrong password #{failures} from {client or '-'}",
        )
        if lock_s:
            await self._credentials.update_one(
                {"_id": stored["_id"]}, {"$set": {"locked_until": now + timedelta(seconds=lock_s)}}
            )
            await self._dir.history.record(
                stored.get("tenant_id", ""),
                actor,
                "auth.locked",
                "user",
                stored["user_id"],
                detail=f"locked for {lock_s}s after {failures} failures",
            )
            log.warning("login_locked", user_id=stored["user_id"], seconds=lock_s)
            return Reply(status=Reply.STATUS_LOCKED, retry_after_s=lock_s)
        return Reply(status=Reply.STATUS_INVALID)

    async def _api_key_login(self, api_key: str) -> Reply:
        if not api_key.startswith(API_KEY_PREFIX):
            return Reply(status=Reply.STATUS_INVALID)
        key = await self._keys.find_one({"key_hash": key_hash(api_key)})
        if key is None or key.get("revoked_at") is not None:
            return Reply(status=Reply.STATUS_INVALID)
        tenant = await self._db.tenants.find_one({"tenant_id": key["tenant_id"]})
        if tenant is None or tenant.get("status", "active") != "active":
            return Reply(status=Reply.STATUS_DISABLED, detail="the tenant is not active")
        await self._keys.update_one(
            {"_id": key["_id"]}, {"$set": {"last_used_at": self._dir.now()}}
        )
        return Reply(
            status=Reply.STATUS_OK,
            principal=api_pb2.Principal(
                subject_id=key["key_id"],
                tenant_id=key["tenant_id"],
                role=api_pb2.Role.ValueType(ROLES_BY_NAME[key["role"]]),
                auth_method="api_key",
            ),
        )

    async def _recheck(self, user_id: str) -> Reply:
        user = await self._db.users.find_one({"user_id": user_id}) if user_id else None
        refused = await self._user_state(user)
        if refused is not None or user is None:
            return refused or Reply(status=Reply.STATUS_INVALID)
        return Reply(status=Reply.STATUS_OK, principal=self._principal(user, "refresh"))

    # -- API keys -----------------------------------------------------------------------------

    async def create_key(
        self, tenant_id: str, fields: dict[str, Any], actor: Doc
    ) -> tuple[Doc, str]:
        key_id = new_id("k")
        api_key = new_api_key(key_id)
        now = self._dir.now()
        doc: Doc = {
            "key_id": key_id,
            "tenant_id": tenant_id,
            "name": fields["name"],
            "role": fields["role"],
            "key_hash": key_hash(api_key),
            "prefix": api_key[:12],
            "created_by": actor["id"],
            "created_at": now,
            "revoked_at": None,
            "last_used_at": None,
            "version": 1,
        }
        await self._keys.insert_one(doc)
        await self._dir.history.record(
            tenant_id, actor, "api_key.created", "api_key", key_id, after=doc
        )
        return doc, api_key

    async def get_key(self, tenant_id: str, key_id: str) -> Doc | None:
        return await self._keys.find_one({"tenant_id": tenant_id, "key_id": key_id})

    async def page_keys(self, query: Doc, page: PageRequest) -> tuple[list[Doc], str | None]:
        return await find_page(self._keys, query, page, "key_id")

    async def revoke_key(self, doc: Doc, actor: Doc) -> Doc:
        now = self._dir.now()
        updated = await self._keys.find_one_and_update(
            {"tenant_id": doc["tenant_id"], "key_id": doc["key_id"]},
            {"$set": {"revoked_at": doc.get("revoked_at") or now}, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER,
        )
        await self._dir.history.record(
            doc["tenant_id"], actor, "api_key.revoked", "api_key", doc["key_id"]
        )
        return updated or doc
