"""The directory's answers for calls: which active user (with their devices and numbers) a
dialled number, a user id, an extension or a registering SIP device stands for, and which
active users a team (by id, extension or assigned number) rings. resolve_number, resolve_user
and resolve_team share one reply builder, so every way of reaching a user answers the same
shape."""

from __future__ import annotations

import asyncio
from typing import Any, TypeGuard

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from ringwise.directory.v1 import resolve_pb2

from ringwise_directory.common.records import Doc
from ringwise_directory.devices.domain import dial_target
from ringwise_directory.numbers.domain import ROUTABLE

Reply = resolve_pb2.ResolveNumberReply
TeamReply = resolve_pb2.ResolveTeamReply
NOT_FOUND = Reply.STATUS_NOT_FOUND


def _active(doc: Doc | None) -> TypeGuard[Doc]:
    return doc is not None and doc.get("status", "active") == "active"


def reply_device(device: Doc) -> resolve_pb2.Device:
    kind, dial_string = dial_target(device)
    return resolve_pb2.Device(
        device_id=device["device_id"],
        kind=kind,
        dial_string=dial_string,
        label=device.get("label") or "",
        # External devices (mobile, home) are dialled by routing through its PSTN trunk.
        number=(device.get("number") or "") if kind == "external" else "",
    )


class Resolver:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db

    def _tenant(self, tenant_id: str) -> Any:
        return self._db.tenants.find_one({"tenant_id": tenant_id}, {"status": 1})

    def _devices(self, tenant_id: str, user_id: str) -> Any:
        return (
            self._db.devices.find({"tenant_id": tenant_id, "user_id": user_id})
            .sort([("position", ASCENDING), ("device_id", ASCENDING)])
            .to_list()
        )

    async def number(self, number: str) -> Reply:
        assignment = await self._db.numbers.find_one({"number": number})
        if (
            assignment is None
            or assignment.get("status", "active") not in ROUTABLE
            or not assignment.get("user_id")
        ):
            return Reply(status=NOT_FOUND)
        return await self._user_reply(
            assignment["tenant_id"],
            {"user_id": assignment["user_id"]},
            version=int(assignment.get("version", 0)),
        )

    async def user(self, req: resolve_pb2.ResolveUserRequest) -> Reply:
        key = req.WhichOneof("key")
        if key == "sip_username":
            if not req.sip_username:
                return Reply(status=NOT_FOUND)
            device = await self._db.devices.find_one({"sip_username": req.sip_username})
            if device is None or (req.tenant_id and device["tenant_id"] != req.tenant_id):
                return Reply(status=NOT_FOUND)
            return await self._user_reply(
                device["tenant_id"], {"user_id": device["user_id"]}, device_id=device["device_id"]
            )
        if not req.tenant_id or key is None:
            return Reply(status=NOT_FOUND)
        value = getattr(req, key)
        if not value:
            return Reply(status=NOT_FOUND)
        return await self._user_reply(req.tenant_id, {key: value})

    async def _user_reply(
        self, tenant_id: str, user_key: Doc, *, version: int | None = None, device_id: str = ""
    ) -> Reply:
        user_id = user_key.get("user_id")
        # Independent reads at once: routing waits on this answer for a live call.
        tenant, user, devices = await asyncio.gather(
            self._tenant(tenant_id),
            self._db.users.find_one({"tenant_id": tenant_id, **user_key}),
            self._devices(tenant_id, user_id) if user_id else asyncio.sleep(0, []),
        )
        if not (_active(tenant) and _active(user)):
            return Reply(status=NOT_FOUND)
        if not user_id:
            devices = await self._devices(tenant_id, user["user_id"])
        return Reply(
            status=Reply.STATUS_FOUND,
            tenant_id=tenant_id,
            user_id=user["user_id"],
            user_name=user.get("name", ""),
            devices=[reply_device(d) for d in devices],
            ring_timeout_s=int(user.get("ring_timeout_s", 0)),
            version=int(user.get("version", 0)) if version is None else version,
            smartnumber=user.get("smartnumber") or "",
            extension=user.get("extension") or "",
            outbound_numbers=user.get("outbound_numbers") or [],
            allowed_clis=user.get("allowed_clis") or [],
            device_id=device_id,
        )

    async def team(self, req: resolve_pb2.ResolveTeamRequest) -> TeamReply:
        key = req.WhichOneof("key")
        if not req.tenant_id or key is None or not getattr(req, key):
            return TeamReply(status=NOT_FOUND)
        team_key: Doc = {key: getattr(req, key)}
        if key == "number":
            # A routable number of this tenant assigned to a team names that team.
            assigned = await self._db.numbers.find_one(
                {"number": req.number, "tenant_id": req.tenant_id, "assignment.type": "team"}
            )
            if assigned is None or assigned.get("status", "active") not in ROUTABLE:
                return TeamReply(status=NOT_FOUND)
            team_key = {"team_id": assigned["assignment"]["id"]}
        tenant, team = await asyncio.gather(
            self._tenant(req.tenant_id),
            self._db.teams.find_one({"tenant_id": req.tenant_id, **team_key}),
        )
        if not _active(tenant) or team is None:
            return TeamReply(status=NOT_FOUND)
        members: list[str] = list(team.get("members") or [])
        active = {
            u["user_id"]
            for u in await self._db.users.find(
                {"tenant_id": req.tenant_id, "user_id": {"$in": members}, "status": "active"},
                {"user_id": 1},
            ).to_list()
        }
        return TeamReply(
            status=Reply.STATUS_FOUND,
            tenant_id=req.tenant_id,
            team_id=team["team_id"],
            name=team.get("name") or "",
            ring_strategy=team.get("ring_strategy") or "",
            member_user_ids=[m for m in members if m in active],
        )
