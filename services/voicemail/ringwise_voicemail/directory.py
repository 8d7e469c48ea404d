"""What voicemail asks the directory (NATS request/reply): a mailbox owner's devices (MWI
targets) and numbers, a team's members (broadcasts), the user a number belongs to (replies).

Lookups answer None for "no such active user/team"; a directory that does not answer raises,
so the deposit pipeline retries rather than skipping a NOTIFY."""

from __future__ import annotations

from typing import Protocol

from nats.aio.client import Client as NatsClient
from ringwise.directory.v1 import resolve_pb2
from ringwise_kit import bus, subjects

UserReply = resolve_pb2.ResolveNumberReply
TeamReply = resolve_pb2.ResolveTeamReply
FOUND = UserReply.STATUS_FOUND


class DirectoryLookups(Protocol):
    async def user(self, tenant_id: str, user_id: str) -> UserReply | None: ...

    async def team(self, tenant_id: str, team_id: str) -> TeamReply | None: ...

    async def number(self, number: str) -> UserReply | None: ...

    async def extension(self, tenant_id: str, extension: str) -> UserReply | None: ...


class Directory:
    def __init__(self, nc: NatsClient, timeout_s: float = 2.0) -> None:
        self._nc = nc
        self._timeout_s = timeout_s

    async def _user(self, req: resolve_pb2.ResolveUserRequest) -> UserReply | None:
        reply = await bus.request(
            self._nc, subjects.DIRECTORY_RESOLVE_USER, req, UserReply, self._timeout_s
        )
        return reply if reply.status == FOUND else None

    async def user(self, tenant_id: str, user_id: str) -> UserReply | None:
        return await self._user(
            resolve_pb2.ResolveUserRequest(tenant_id=tenant_id, user_id=user_id)
        )

    async def extension(self, tenant_id: str, extension: str) -> UserReply | None:
        return await self._user(
            resolve_pb2.ResolveUserRequest(tenant_id=tenant_id, extension=extension)
        )

    async def number(self, number: str) -> UserReply | None:
        reply = await bus.request(
            self._nc,
            subjects.DIRECTORY_RESOLVE_NUMBER,
            resolve_pb2.ResolveNumberRequest(number=number),
            UserReply,
            self._timeout_s,
        )
        return reply if reply.status == FOUND else None

    async def team(self, tenant_id: str, team_id: str) -> TeamReply | None:
        reply = await bus.request(
            self._nc,
            subjects.DIRECTORY_RESOLVE_TEAM,
            resolve_pb2.ResolveTeamRequest(tenant_id=tenant_id, team_id=team_id),
            TeamReply,
            self._timeout_s,
        )
        return reply if reply.status == FOUND else None


def mwi_targets(user: UserReply | None) -> tuple[str, ...]:
    """Where the user's message-waiting NOTIFYs go: each SIP device once. A provisioned phone
    or trunk ("PJSIP/<endpoint>") by its endpoint (all its registered contacts); a static
    phone ("PJSIP/<endpoint>/<sip uri>") by its URI. External numbers take no NOTIFY."""
    if user is None:
        return ()
    targets: list[str] = []
    for device in user.devices:
        if device.kind != "sip" or not device.dial_string.startswith("PJSIP/"):
            continue
        endpoint, _, uri = device.dial_string.removeprefix("PJSIP/").partition("/")
        targets.append(uri or endpoint)
    return tuple(dict.fromkeys(t for t in targets if t))


def sender_number(user: UserReply) -> str:
    """The number a user's own messages (replies) come from: their smartnumber, else their
    extension."""
    return user.smartnumber or user.extension
