"""Which user is this? The directory's resolve_user over NATS request/reply: by the SIP user
name of the phone a call comes from, or by an extension within a tenant (outbound calls and
feature codes). Not cached: a phone's owner or an extension can change at any time, and an
outbound call asks once."""

from __future__ import annotations

import nats.errors
from nats.aio.client import Client as NatsClient
from prometheus_client import Counter
from ringwise.directory.v1 import resolve_pb2
from ringwise_kit import bus, subjects

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
        try:
            reply = await bus.request(
                self._nc,
                subjects.DIRECTORY_RESOLVE_USER,
                request,
                resolve_pb2.ResolveNumberReply,
                timeout_s=self._timeout_s,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            LOOKUPS.labels(key, "failed").inc()
            return LookupFailed(type(exc).__name__)
        except bus.RemoteError as exc:
            LOOKUPS.labels(key, "failed").inc()
            return LookupFailed(f"directory error {exc}")
        found = reply.status == resolve_pb2.ResolveNumberReply.STATUS_FOUND
        LOOKUPS.labels(key, "found" if found else "not_found").inc()
        return reply
