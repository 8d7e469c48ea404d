"""Devices in MongoDB. SIP passwords are never stored: only md5(username:realm:password)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError
from ringwise.directory.v1 import devices_pb2
from ringwise_kit.api import ApiError

from ringwise_directory.common.context import Directory
from ringwise_directory.common.records import (
    Doc,
    PageRequest,
    diff,
    find_page,
    new_id,
    update_versioned,
)
from ringwise_directory.devices.domain import (
    MAX_DEVICES_PER_USER,
    SIP_KINDS,
    md5_cred,
    new_sip_password,
    new_sip_username,
)
from ringwise_directory.numbers.store import NumberStore

HIDDEN = ("md5_cred", "resolve_kind", "slot")
MAX_SIP_PAGE = 500


def sip_device(doc: Doc) -> devices_pb2.SipDevice:
    return devices_pb2.SipDevice(
        tenant_id=doc["tenant_id"],
        device_id=doc["device_id"],
        user_id=doc.get("user_id", ""),
        sip_username=doc["sip_username"],
        md5_cred=doc.get("md5_cred") or "",
        realm=doc.get("realm") or "",
        label=doc.get("label") or "",
        max_contacts=int(doc.get("max_contacts") or 0),
        kind="phone" if doc["kind"] == "sip_phone" else "trunk",
        trunk_address=doc.get("trunk_address") or "",
        version=int(doc["version"]),
    )


class DeviceStore:
    def __init__(self, directory: Directory, numbers: NumberStore) -> None:
        self._dir = directory
        self._devices = directory.db.devices
        self._numbers = numbers

    async def ensure_indexes(self) -> None:
        await self._devices.create_index(
            [("tenant_id", ASCENDING), ("device_id", ASCENDING)], unique=True
        )
        await self._devices.create_index(
            [("tenant_id", ASCENDING), ("user_id", ASCENDING), ("position", ASCENDING)]
        )
        await self._devices.create_index(
            [("tenant_id", ASCENDING), ("user_id", ASCENDING), ("slot", ASCENDING)],
            unique=True,
            partialFilterExpression={"slot": {"$type": "int"}},
        )
        await self._devices.create_index(
            [("sip_username", ASCENDING)],
            unique=True,
            partialFilterExpression={"sip_username": {"$type": "string"}},
        )

    async def create(
        self, tenant_id: str, user_id: str, fields: dict[str, Any], actor: Doc
    ) -> tuple[Doc, str | None]:
        """The stored device, and its SIP password (phones only; shown this once)."""
        now = self._dir.now()
        doc: Doc = {
            "device_id": new_id("d"),
            "tenant_id": tenant_id,
            "user_id": user_id,
            "kind": fields["kind"],
            "label": fields.get("label"),
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        password = None
        if fields["kind"] in SIP_KINDS:
            doc["realm"] = self._dir.sip_realm
            doc["max_contacts"] = fields.get("max_contacts") or (
                1 if fields["kind"] == "sip_phone" else 0
            )
        if fields["kind"] == "sip_phone":
            password = new_sip_password()
        if fields["kind"] == "sip_trunk":
            doc["trunk_address"] = fields["trunk_address"]
        if fields["kind"] == "external":
            doc["number"] = fields["number"]
        # Each device takes one of the user's 5 slots (unique in the database, so concurrent
        # creations cannot exceed the limit); its position, the ring order, follows the last.
        # Every lost race means another creation took a slot: after MAX + 1 tries all are taken.
        for _attempt in range(MAX_DEVICES_PER_USER + 2):
            held = await self._devices.find(
                {"tenant_id": tenant_id, "user_id": user_id}, {"slot": 1, "position": 1}
            ).to_list()
            free = sorted(set(range(1, MAX_DEVICES_PER_USER + 1)) - {d.get("slot") for d in held})
            if len(held) >= MAX_DEVICES_PER_USER or not free:
                raise ApiError(
                    409,
                    "Conflict",
                    f"a user has at most {MAX_DEVICES_PER_USER} devices",
                    errors=[{"field": "kind", "message": "device limit reached"}],
                )
            doc["slot"] = free[0]
            doc["position"] = max((int(d.get("position", 0)) for d in held), default=0) + 1
            if fields["kind"] in SIP_KINDS:
                doc["sip_username"] = new_sip_username()
            if password is not None:
                doc["md5_cred"] = md5_cred(doc["sip_username"], self._dir.sip_realm, password)
            try:
                await self._devices.insert_one(doc)
                break
            except DuplicateKeyError:  # another creation took the slot: look again
                doc.pop("_id", None)
        else:
            raise ApiError(503, "Service Unavailable", "the user's devices are changing; retry")
        await self._dir.history.record(
            tenant_id, actor, "device.created", "device", doc["device_id"], after=doc
        )
        await self._changed(doc, deleted=False)
        return doc, password

    async def get(self, tenant_id: str, user_id: str, device_id: str) -> Doc | None:
        return await self._devices.find_one(
            {"tenant_id": tenant_id, "user_id": user_id, "device_id": device_id}
        )

    async def page(self, query: Doc, page: PageRequest) -> tuple[list[Doc], str | None]:
        return await find_page(self._devices, query, page, "device_id")

    async def update(self, current: Doc, changes: dict[str, Any], actor: Doc, action: str) -> Doc:
        updated = await update_versioned(
            self._devices,
            {"tenant_id": current["tenant_id"], "device_id": current["device_id"]},
            current,
            changes,
            self._dir.now(),
        )
        before, after = diff(current, updated)
        await self._dir.history.record(
            current["tenant_id"],
            actor,
            action,
            "device",
            current["device_id"],
            before=before,
            after=after,
        )
        await self._changed(updated, deleted=False)
        return updated

    async def reset_password(self, current: Doc, actor: Doc) -> tuple[Doc, str]:
        password = new_sip_password()
        cred = md5_cred(current["sip_username"], self._dir.sip_realm, password)
        updated = await self.update(
            current,
            {"md5_cred": cred, "realm": self._dir.sip_realm},
            actor,
            "device.password_reset",
        )
        return updated, password

    async def delete(self, current: Doc, actor: Doc) -> None:
        result = await self._devices.delete_one(
            {
                "tenant_id": current["tenant_id"],
                "device_id": current["device_id"],
                "version": current["version"],
            }
        )
        if result.deleted_count == 0:
            raise ApiError(412, "Precondition Failed", "the device changed meanwhile; retry")
        await self._dir.history.record(
            current["tenant_id"],
            actor,
            "device.deleted",
            "device",
            current["device_id"],
            before=current,
        )
        await self._changed(current, deleted=True)

    async def delete_all_of_user(self, tenant_id: str, user_id: str, actor: Doc) -> None:
        for doc in await self._devices.find({"tenant_id": tenant_id, "user_id": user_id}).to_list():
            await self.delete(doc, actor)

    async def _publish_sip(self, doc: Doc, *, deleted: bool) -> None:
        device = (
            devices_pb2.SipDevice(
                tenant_id=doc["tenant_id"],
                device_id=doc["device_id"],
                sip_username=doc["sip_username"],
            )
            if deleted
            else sip_device(doc)
        )
        await self._dir.notifier.sip_device_changed(device, deleted=deleted)

    async def _changed(self, doc: Doc, *, deleted: bool) -> None:
        if doc["kind"] in SIP_KINDS:
            # A suspended owner's devices stay out of Asterisk whatever changes on them.
            enabled = bool(await self._enabled_owners([doc]))
            await self._publish_sip(doc, deleted=deleted or not enabled)
        # The user's numbers resolve to their devices.
        await self._numbers.touch({"tenant_id": doc["tenant_id"], "user_id": doc["user_id"]})

    async def list_sip(self, after: str, limit: int) -> tuple[list[devices_pb2.SipDevice], str]:
        """Every tenant's SIP devices by sip_username (routing's full re-apply), except those of
        suspended users or tenants: they must not register. A page may hold fewer devices than
        asked (some were left out); next_after says where to go on."""
        size = min(limit or MAX_SIP_PAGE, MAX_SIP_PAGE)
        query: Doc = {"kind": {"$in": list(SIP_KINDS)}}
        if after:
            query["sip_username"] = {"$gt": after}
        docs = (
            await self._devices.find(query)
            .sort([("sip_username", ASCENDING)])
            .limit(size + 1)
            .to_list()
        )
        more = len(docs) > size
        docs = docs[:size]
        enabled = await self._enabled_owners(docs)
        devices = [sip_device(d) for d in docs if (d["tenant_id"], d["user_id"]) in enabled]
        return devices, (docs[-1]["sip_username"] if more else "")

    async def _enabled_owners(self, docs: list[Doc]) -> set[tuple[str, str]]:
        """Which (tenant, user) pairs among these devices' owners are active, in active tenants."""
        tenants = {d["tenant_id"] for d in docs}
        if not tenants:
            return set()
        db = self._dir.db
        suspended = {
            t["tenant_id"]
            for t in await db.tenants.find(
                {"tenant_id": {"$in": list(tenants)}, "status": {"$ne": "active"}},
                {"tenant_id": 1},
            ).to_list()
        }
        owners = {(d["tenant_id"], d["user_id"]) for d in docs if d["tenant_id"] not in suspended}
        active = await db.users.find(
            {
                "tenant_id": {"$in": sorted({tenant for tenant, _ in owners})},
                "user_id": {"$in": sorted({user for _, user in owners})},
                "status": "active",
            },
            {"tenant_id": 1, "user_id": 1},
        ).to_list()
        return owners & {(u["tenant_id"], u["user_id"]) for u in active}

    async def republish(self, tenant_id: str, user_id: str | None = None) -> None:
        """A user (or, user_id None, a whole tenant) was suspended or reactivated: tell routing
        to remove or re-create their SIP devices in Asterisk, as their state now says."""
        query: Doc = {"tenant_id": tenant_id, "kind": {"$in": list(SIP_KINDS)}}
        if user_id is not None:
            query["user_id"] = user_id
        docs = await self._devices.find(query).to_list()
        enabled = await self._enabled_owners(docs)
        for doc in docs:
            await self._publish_sip(doc, deleted=(doc["tenant_id"], doc["user_id"]) not in enabled)

    async def replace_fixture_devices(
        self, tenant_id: str, user_id: str, devices: list[Doc]
    ) -> None:
        """The dev fixture's static desk phones (fixed dial strings, nothing to provision)."""
        now = self._dir.now()
        wanted = {d["device_id"] for d in devices}
        await self._devices.delete_many(
            {
                "tenant_id": tenant_id,
                "user_id": user_id,
                "kind": "static",
                "device_id": {"$nin": list(wanted)},
            }
        )
        for position, device in enumerate(devices, start=1):
            await self._devices.update_one(
                {"tenant_id": tenant_id, "device_id": device["device_id"]},
                {
                    "$set": {
                        "user_id": user_id,
                        "kind": "static",
                        "resolve_kind": device.get("kind", "sip"),
                        "label": device.get("label", ""),
                        "dial_string": device.get("dial_string", ""),
                        "position": position,
                        "updated_at": now,
                    },
                    "$setOnInsert": {"version": 1, "created_at": now},
                },
                upsert=True,
            )
