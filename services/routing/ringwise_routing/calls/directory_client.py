"""Number resolution for routing: the directory over NATS request/reply, cached in Redis.

Entries are dropped when directory publishes number_changed, and expire after a TTL as a
backstop. A Redis outage only costs the cache: lookups then go straight to the directory.
"""

from __future__ import annotations

import nats.errors
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import Counter
from ringwise.directory.v1 import resolve_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.logs import get_logger

from ringwise_routing.calls.policy import Lookup, LookupFailed

log = get_logger(__name__)

LOOKUPS = Counter("ringwise_routing_number_lookups_total", "Number lookups", ["source"])

Reply = resolve_pb2.ResolveNumberReply


def cache_key(number: str) -> str:
    return f"ringwise:routing:number:{number}"


class NumberDirectory:
    def __init__(
        self,
        nc: NatsClient,
        redis: aioredis.Redis,
        *,
        ttl_s: int = 300,
        negative_ttl_s: int = 30,
        timeout_s: float = 1.0,
    ) -> None:
        self._nc = nc
        self._redis = redis
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._timeout_s = timeout_s
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self._nc.subscribe(
            subjects.DIRECTORY_CHANGES, cb=self._on_number_changed
        )

    async def stop(self) -> None:
        if self._subscription:
            await self._subscription.unsubscribe()

    async def _on_number_changed(self, msg: Msg) -> None:
        change = resolve_pb2.NumberChanged()
        change.ParseFromString(msg.data)
        try:
            await self._redis.delete(cache_key(change.number))
        except Exception as exc:
            log.warning("number_cache_invalidation_failed", error=repr(exc))

    async def resolve(self, number: str) -> Lookup:
        key = cache_key(number)
        try:
            cached = await self._redis.get(key)
        except Exception as exc:
            log.warning("number_cache_unavailable", error=repr(exc))
            cached = None
        if cached is not None:
            LOOKUPS.labels("cache").inc()
            reply = Reply()
            reply.ParseFromString(cached if isinstance(cached, bytes) else cached.encode())
            return reply
        try:
            reply = await bus.request(
                self._nc,
                subjects.DIRECTORY_RESOLVE_NUMBER,
                resolve_pb2.ResolveNumberRequest(number=number),
                Reply,
                timeout_s=self._timeout_s,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            LOOKUPS.labels("failed").inc()
            return LookupFailed(type(exc).__name__)
        except bus.RemoteError as exc:
            LOOKUPS.labels("failed").inc()
            return LookupFailed(f"directory error {exc}")
        LOOKUPS.labels("directory").inc()
        ttl = self._ttl_s if reply.status == Reply.STATUS_FOUND else self._negative_ttl_s
        try:
            await self._redis.set(key, reply.SerializeToString(), ex=ttl)
        except Exception as exc:
            log.warning("number_cache_unavailable", error=repr(exc))
        return reply
