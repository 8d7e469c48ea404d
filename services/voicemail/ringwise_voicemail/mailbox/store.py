"""Mailboxes in Mongo: settings, PIN hash and lock state, greetings, the audit trail.

One document per mailbox, keyed by "<tenant>:<user>"; every query is scoped by tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from ringwise_voicemail.mailbox.greetings import Greeting, GreetingKind
from ringwise_voicemail.mailbox.pin import LockState
from ringwise_voicemail.mailbox.retention import RetentionPolicy

Doc = dict[str, Any]


def mailbox_key(tenant_id: str, user_id: str) -> str:
    return f"{tenant_id}:{user_id}"


def mwi_mailbox(tenant_id: str, user_id: str) -> str:
    """The Asterisk mailbox name (ARI /mailboxes); PJSIP endpoints list it in `mailboxes`."""
    return f"{user_id}@{tenant_id}"


@dataclass(frozen=True)
class Alerts:
    sms: bool = False
    email: bool = False
    call: bool = False


@dataclass(frozen=True)
class Mailbox:
    tenant_id: str
    user_id: str
    email: str = ""
    # Voicemail-to-email: attach the audio (else a short-lived link); keep the message after
    # sending (else it is deleted once the email is out).
    email_attach: bool = True
    email_keep: bool = True
    time_zone: str = "UTC"
    display_name: str = ""
    extended_absence: bool = False
    alerts: Alerts = field(default_factory=Alerts)
    pin_hash: str | None = None
    lock: LockState = field(default_factory=LockState)
    greetings: dict[GreetingKind, Greeting] = field(default_factory=dict)
    # Where message-waiting NOTIFYs go: PJSIP endpoint names (their registered contacts) or
    # SIP URIs of static-contact phones.
    mwi_targets: tuple[str, ...] = ()
    version: int = 0

    @property
    def mwi_name(self) -> str:
        return mwi_mailbox(self.tenant_id, self.user_id)


def _greeting_doc(greeting: Greeting) -> Doc:
    return {
        "kind": greeting.kind.value,
        "audio_key": greeting.audio_key,
        "recorded_at": greeting.recorded_at,
        "for_day": greeting.for_day.isoformat() if greeting.for_day else None,
    }


def _greeting(doc: Doc) -> Greeting:
    from datetime import date  # noqa: PLC0415

    return Greeting(
        kind=GreetingKind(doc["kind"]),
        audio_key=doc["audio_key"],
        recorded_at=doc["recorded_at"],
        for_day=date.fromisoformat(doc["for_day"]) if doc.get("for_day") else None,
    )


def to_mailbox(doc: Doc) -> Mailbox:
    lock = doc.get("lock") or {}
    alerts = doc.get("alerts") or {}
    return Mailbox(
        tenant_id=doc["tenant_id"],
        user_id=doc["user_id"],
        email=doc.get("email", ""),
        email_attach=doc.get("email_attach", True),
        email_keep=doc.get("email_keep", True),
        time_zone=doc.get("time_zone", "UTC"),
        display_name=doc.get("display_name", ""),
        extended_absence=doc.get("extended_absence", False),
        alerts=Alerts(
            sms=alerts.get("sms", False),
            email=alerts.get("email", False),
            call=alerts.get("call", False),
        ),
        pin_hash=doc.get("pin_hash"),
        lock=LockState(failures=lock.get("failures", 0), locked_until=lock.get("locked_until")),
        greetings={
            GreetingKind(kind): _greeting(g) for kind, g in (doc.get("greetings") or {}).items()
        },
        mwi_targets=tuple(doc.get("mwi_targets") or ()),
        version=doc.get("version", 0),
    )


# Settings a user or admin may change through the API (the rest has its own operations).
SETTINGS_FIELDS = (
    "email",
    "email_attach",
    "email_keep",
    "time_zone",
    "display_name",
    "extended_absence",
    "alerts",
    "mwi_targets",
)


class MailboxStore:
    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        db = client[database]
        self._mailboxes: AsyncCollection[Doc] = db.mailboxes
        self._audit: AsyncCollection[Doc] = db.audit
        self._tenants: AsyncCollection[Doc] = db.tenant_settings

    async def ensure_indexes(self) -> None:
        await self._mailboxes.create_index([("tenant_id", ASCENDING), ("user_id", ASCENDING)])
        await self._audit.create_index([("tenant_id", ASCENDING), ("at", ASCENDING)])

    async def get(self, tenant_id: str, user_id: str) -> Mailbox | None:
        doc = await self._mailboxes.find_one({"_id": mailbox_key(tenant_id, user_id)})
        return to_mailbox(doc) if doc else None

    async def put_settings(
        self, tenant_id: str, user_id: str, settings: Doc, now: datetime
    ) -> Mailbox:
        """Create the mailbox or update its settings (only SETTINGS_FIELDS)."""
        changes = {k: v for k, v in settings.items() if k in SETTINGS_FIELDS}
        doc = await self._mailboxes.find_one_and_update(
            {"_id": mailbox_key(tenant_id, user_id)},
            {
                "$set": {**changes, "updated_at": now},
                "$inc": {"version": 1},
                "$setOnInsert": {"tenant_id": tenant_id, "user_id": user_id, "created_at": now},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        return to_mailbox(doc)

    async def delete(self, tenant_id: str, user_id: str) -> bool:
        result = await self._mailboxes.delete_one({"_id": mailbox_key(tenant_id, user_id)})
        return result.deleted_count == 1

    async def set_pin_hash(self, tenant_id: str, user_id: str, pin_hash: str) -> bool:
        result = await self._mailboxes.update_one(
            {"_id": mailbox_key(tenant_id, user_id)},
            {"$set": {"pin_hash": pin_hash, "lock": {"failures": 0, "locked_until": None}}},
        )
        return result.matched_count == 1

    async def set_lock(self, tenant_id: str, user_id: str, lock: LockState) -> None:
        await self._mailboxes.update_one(
            {"_id": mailbox_key(tenant_id, user_id)},
            {"$set": {"lock": {"failures": lock.failures, "locked_until": lock.locked_until}}},
        )

    async def set_greeting(self, tenant_id: str, user_id: str, greeting: Greeting) -> bool:
        result = await self._mailboxes.update_one(
            {"_id": mailbox_key(tenant_id, user_id)},
            {"$set": {f"greetings.{greeting.kind.value}": _greeting_doc(greeting)}},
        )
        return result.matched_count == 1

    async def remove_greeting(self, tenant_id: str, user_id: str, kind: GreetingKind) -> bool:
        result = await self._mailboxes.update_one(
            {"_id": mailbox_key(tenant_id, user_id)},
            {"$unset": {f"greetings.{kind.value}": ""}},
        )
        return result.modified_count == 1

    async def audit(
        self, tenant_id: str, user_id: str, what: str, at: datetime, **extra: Any
    ) -> None:
        await self._audit.insert_one(
            {"tenant_id": tenant_id, "user_id": user_id, "what": what, "at": at, **extra}
        )

    async def audit_entries(self, tenant_id: str, user_id: str) -> list[Doc]:
        cursor = self._audit.find({"tenant_id": tenant_id, "user_id": user_id}).sort("at", 1)
        return [doc async for doc in cursor]

    async def retention_of(self, tenant_id: str) -> RetentionPolicy:
        doc = await self._tenants.find_one({"_id": tenant_id})
        if not doc:
            return RetentionPolicy()
        return RetentionPolicy(
            unsaved_days=doc.get("unsaved_days", RetentionPolicy().unsaved_days),
            saved_days=doc.get("saved_days"),
        )

    async def set_retention(self, tenant_id: str, policy: RetentionPolicy) -> None:
        await self._tenants.update_one(
            {"_id": tenant_id},
            {"$set": {"unsaved_days": policy.unsaved_days, "saved_days": policy.saved_days}},
            upsert=True,
        )

    async def with_greeting(self, tenant_id: str, kind: GreetingKind) -> list[Mailbox]:
        cursor = self._mailboxes.find(
            {"tenant_id": tenant_id, f"greetings.{kind.value}": {"$exists": True}}
        )
        return [to_mailbox(doc) async for doc in cursor]

    async def tenants_with_mailboxes(self) -> list[str]:
        return sorted(await self._mailboxes.distinct("tenant_id"))
