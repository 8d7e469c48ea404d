"""Which user is this? The directory's resolve_user over NATS request/reply: by the SIP user
name of the phone a call comes from, or by an extension within a tenant (outbound calls and
feature codes). Not cached: a phone's owner or an extension can change at any time, and an
outbound call asks once."""

from __future__ import annotations

from nats.aio.client import Client as NatsClient
from prometheus_client import Counter
from ringwise.directory.v1 import resolve_pb2
from ringwise_kit import subjects

from ringwise_routing.calls.directory_client import ask_directory
from ringwise_routing.calls.policy import Lookup, LookupFailed

LOOKUPS = Counter(
    "ringwise_routing_user_lookups_total",
    "resolve_user requests by key and outcome",
    ["key", "outcome"],
)


class UserLookup:
    def __init__(self, nc: NatsClient, *, timeout_s: float = 1.0) -> None:
        self._nc = nc
        self._timeout_s = timeout_s

    async def by_sip_username(self, sip_username: str) -> Lookup:
        return await self._resolve(
            "sip_username", resolve_pb2.ResolveUserRequest(sip_username=sip_username)
        )

    async def by_extension(self, tenant_id: str, extension: str) -> Lookup:
        return await self._resolve(
            "extension", resolve_pb2.ResolveUserRequest(tenant_id=tenant_id, extension=extension)
        )

    async def _resolve(self, key: str, request: resolve_pb2.ResolveUserRequest) -> Lookup:
        reply = await ask_directory(
            self._nc,
            subjects.DIRECTORY_RESOLVE_USER,
            request,
            resolve_pb2.ResolveNumberReply,
            self._timeout_s,
        )
        if isinstance(reply, LookupFailed):
            LOOKUPS.labels(key, "failed").inc()
            return reply
        found = reply.status == resolve_pb2.ResolveNumberReply.STATUS_FOUND
        LOOKUPS.labels(key, "found" if found else "not_found").inc()
        return reply
