"""Number resolution for routing: the directory over NATS request/reply, cached in Redis.

Entries are dropped when directory publishes number_changed, and expire after a TTL as a
backstop. A Redis outage only costs the cache: lookups then go straight to the directory.
A few seconds' copy in process memory in front of Redis spares the Redis round trip for a
number that is called again and again (a switchboard, a campaign); it is dropped on
number_changed too.
"""

from __future__ import annotations

import time
from typing import TypeVar

import nats.errors
import redis.asyncio as aioredis
from google.protobuf.message import Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import Counter
from ringwise.directory.v1 import resolve_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.logs import get_logger

from ringwise_routing.calls.policy import Lookup, LookupFailed, normalize_number

log = get_logger(__name__)

LOOKUPS = Counter("ringwise_routing_number_lookups_total", "Number lookups", ["source"])

Reply = resolve_pb2.ResolveNumberReply
M = TypeVar("M", bound=Message)


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
        local_ttl_s: float = 5.0,
        local_max_entries: int = 10_000,
    ) -> None:
        self._nc = nc
        self._redis = redis
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._timeout_s = timeout_s
        self._subscription: Subscription | None = None
        self._started_subscription: Subscription | None = None
        self._local_ttl_s = local_ttl_s
        self._local_max_entries = local_max_entries
        self._local: dict[str, tuple[float, Reply]] = {}

    async def start(self) -> None:
        self._subscription = await self._nc.subscribe(
            subjects.DIRECTORY_CHANGES, cb=self._on_number_changed
        )
        self._started_subscription = await self._nc.subscribe(
            subjects.DIRECTORY_STARTED, cb=self._on_directory_started
        )

    async def stop(self) -> None:
        if self._subscription:
            await self._subscription.unsubscribe()
        if self._started_subscription:
            await self._started_subscription.unsubscribe()

    async def _on_directory_started(self, _msg: Msg) -> None:
        """A directory instance (re)started: a change it stored just before a crash may never
        have been announced, so nothing cached can be trusted."""
        await self.forget_all()

    async def forget_all(self) -> int:
        self._local.clear()
        dropped = 0
        try:
            batch: list[bytes] = []
            async for key in self._redis.scan_iter(match=cache_key("*"), count=500):
                batch.append(key)
                if len(batch) >= 500:
                    dropped += int(await self._redis.delete(*batch))
                    batch.clear()
            if batch:
                dropped += int(await self._redis.delete(*batch))
        except Exception as exc:
            log.warning("number_cache_flush_failed", error=repr(exc))
        log.info("number_cache_flushed", entries=dropped)
        return dropped

    async def _on_number_changed(self, msg: Msg) -> None:
        change = resolve_pb2.NumberChanged()
        change.ParseFromString(msg.data)
        self._local.pop(change.number, None)
        try:
            await self._redis.delete(cache_key(change.number))
        except Exception as exc:
            log.warning("number_cache_invalidation_failed", error=repr(exc))

    def _remember(self, number: str, reply: Reply) -> None:
        if self._local_ttl_s <= 0:
            return
        if len(self._local) >= self._local_max_entries:
            self._local.clear()  # rare; simpler than LRU bookkeeping on the hot path
        self._local[number] = (time.monotonic() + self._local_ttl_s, reply)

    async def resolve(self, number: str) -> Lookup:
        local = self._local.get(number)
        if local is not None:
            if local[0] > time.monotonic():
                LOOKUPS.labels("memory").inc()
                return local[1]
            del self._local[number]
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
            self._remember(number, reply)
            return reply
        answer = await self._ask(
            subjects.DIRECTORY_RESOLVE_NUMBER,
            resolve_pb2.ResolveNumberRequest(number=number),
            Reply,
        )
        if isinstance(answer, LookupFailed):
            return answer
        reply = answer
        LOOKUPS.labels("directory").inc()
        self._remember(number, reply)
        ttl = self._ttl_s if reply.status == Reply.STATUS_FOUND else self._negative_ttl_s
        try:
            await self._redis.set(key, reply.SerializeToString(), ex=ttl)
        except Exception as exc:
            log.warning("number_cache_unavailable", error=repr(exc))
        return reply

    async def resolve_user(self, tenant_id: str, user_id: str) -> Lookup:
        """A user by id (diverts to a user or delegate, team members); not cached: diverts are
        rare and must see a user's devices as they are now."""
        return await self._ask(
            subjects.DIRECTORY_RESOLVE_USER,
            resolve_pb2.ResolveUserRequest(tenant_id=tenant_id, user_id=user_id),
            Reply,
        )

    async def resolve_team(
        self, tenant_id: str, team_id: str
    ) -> resolve_pb2.ResolveTeamReply | LookupFailed:
        return await self._ask(
            subjects.DIRECTORY_RESOLVE_TEAM,
            resolve_pb2.ResolveTeamRequest(tenant_id=tenant_id, team_id=team_id),
            resolve_pb2.ResolveTeamReply,
        )

    async def find_colleague(self, tenant_id: str, keyed: str) -> str | None:
        """The user of this tenant whose extension digits keyed on a phone are. None for
        nobody (or no answer from the directory)."""
        if not keyed:
            return None
        answer = await self._ask(
            subjects.DIRECTORY_RESOLVE_USER,
            resolve_pb2.ResolveUserRequest(tenant_id=tenant_id, extension=keyed),
            Reply,
        )
        if isinstance(answer, LookupFailed):
            log.warning("colleague_lookup_failed", reason=answer.reason)
            return None
        if answer.status == Reply.STATUS_FOUND and answer.tenant_id == tenant_id:
            return answer.user_id
        return None

    async def find_team(self, tenant_id: str, keyed: str) -> str | None:
        """The team of this tenant that digits keyed on a phone name: its extension, else a
        number assigned to it. None for nothing (or no answer from the directory)."""
        if not keyed:
            return None
        for request in (
            resolve_pb2.ResolveTeamRequest(tenant_id=tenant_id, extension=keyed),
            resolve_pb2.ResolveTeamRequest(tenant_id=tenant_id, number=normalize_number(keyed)),
        ):
            answer = await self._ask(
                subjects.DIRECTORY_RESOLVE_TEAM, request, resolve_pb2.ResolveTeamReply
            )
            if isinstance(answer, LookupFailed):
                log.warning("team_lookup_failed", reason=answer.reason)
                return None
            if answer.status == Reply.STATUS_FOUND:
                return answer.team_id
        return None

    async def _ask(self, subject: str, request: Message, reply: type[M]) -> M | LookupFailed:
        answer = await ask_directory(self._nc, subject, request, reply, self._timeout_s)
        if isinstance(answer, LookupFailed):
            LOOKUPS.labels("failed").inc()
        return answer


async def ask_directory(
    nc: NatsClient, subject: str, request: Message, reply: type[M], timeout_s: float
) -> M | LookupFailed:
    """One request to the directory; its absence or its error is a LookupFailed (not the
    caller's fault), never an exception, so every call treats it the same way."""
    try:
        return await bus.request(nc, subject, request, reply, timeout_s=timeout_s)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
        return LookupFailed(type(exc).__name__)
    except bus.RemoteError as exc:
        return LookupFailed(f"directory error {exc}")
