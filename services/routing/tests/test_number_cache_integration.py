"""Routing's number lookups: directory over real NATS, cached in real Redis, invalidated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription
from ringwise.directory.v1 import resolve_pb2
from ringwise_dev.infra import Infra
from ringwise_kit import bus, subjects
from ringwise_routing.calls.directory_client import NumberDirectory, cache_key
from ringwise_routing.calls.policy import LookupFailed

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
Reply = resolve_pb2.ResolveNumberReply


async def serve_directory(
    nc: NatsClient, answer: Callable[[resolve_pb2.ResolveNumberRequest], Awaitable[Reply]]
) -> Subscription:
    """A stand-in directory answering resolve_number on the real NATS."""
    return await bus.serve(
        nc, subjects.DIRECTORY_RESOLVE_NUMBER, "directory", resolve_pb2.ResolveNumberRequest, answer
    )


@pytest_asyncio.fixture(loop_scope="session")
async def links(infra: Infra) -> AsyncIterator[tuple[NatsClient, aioredis.Redis]]:
    nc = await bus.connect(infra.endpoints.nats_url, "routing-cache-test")
    redis = aioredis.from_url(infra.endpoints.redis_url)
    await redis.delete(cache_key("+15550100"), cache_key("+15559999"))
    yield nc, redis
    await redis.aclose()
    await nc.drain()


async def test_lookups_are_cached_and_dropped_when_the_number_changes(
    links: tuple[NatsClient, aioredis.Redis],
) -> None:
    nc, redis = links
    asked: list[str] = []
    owner = {"+15550100": "alice"}

    async def directory(req: resolve_pb2.ResolveNumberRequest) -> Reply:
        asked.append(req.number)
        if req.number not in owner:
            return Reply(status=Reply.STATUS_NOT_FOUND)
        return Reply(status=Reply.STATUS_FOUND, tenant_id="acme", user_id=owner[req.number])

    sub = await serve_directory(nc, directory)
    numbers = NumberDirectory(nc, redis, ttl_s=300, negative_ttl_s=30)
    await numbers.start()
    try:
        first = await numbers.resolve("+15550100")
        second = await numbers.resolve("+15550100")
        assert isinstance(first, Reply) and isinstance(second, Reply)
        assert first.user_id == second.user_id == "alice"
        assert asked == ["+15550100"]
        assert 0 < await redis.ttl(cache_key("+15550100")) <= 300

        unknown = await numbers.resolve("+15559999")
        assert isinstance(unknown, Reply) and unknown.status == Reply.STATUS_NOT_FOUND
        assert 0 < await redis.ttl(cache_key("+15559999")) <= 30

        owner["+15550100"] = "bob"
        change = resolve_pb2.NumberChanged(tenant_id="acme", number="+15550100", version=2)
        await nc.publish(subjects.number_changed("acme"), change.SerializeToString())
        for _ in range(100):
            if not await redis.exists(cache_key("+15550100")):
                break
            await asyncio.sleep(0.02)
        moved = await numbers.resolve("+15550100")
        assert isinstance(moved, Reply) and moved.user_id == "bob"
        assert asked == ["+15550100", "+15559999", "+15550100"]
    finally:
        await numbers.stop()
        await sub.unsubscribe()


async def test_without_a_directory_the_lookup_fails_cleanly(
    links: tuple[NatsClient, aioredis.Redis],
) -> None:
    nc, redis = links
    numbers = NumberDirectory(nc, redis, timeout_s=0.2)
    result = await numbers.resolve("+15550177")
    assert isinstance(result, LookupFailed)
    assert result.reason == "NoRespondersError"


async def test_with_redis_down_lookups_go_straight_to_the_directory(
    links: tuple[NatsClient, aioredis.Redis],
) -> None:
    nc, _ = links
    dead_redis = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)

    async def directory(req: resolve_pb2.ResolveNumberRequest) -> Reply:
        return Reply(status=Reply.STATUS_FOUND, tenant_id="acme", user_id="carol")

    sub = await serve_directory(nc, directory)
    try:
        result = await NumberDirectory(nc, dead_redis).resolve("+15550102")
        assert isinstance(result, Reply) and result.user_id == "carol"
    finally:
        await sub.unsubscribe()
        await dead_redis.aclose()


async def test_two_routing_instances_share_redis_and_both_forget_a_changed_number(
    links: tuple[NatsClient, aioredis.Redis],
) -> None:
    nc, redis = links
    await redis.delete(cache_key("+15550105"))
    asked: list[str] = []
    owner = {"+15550105": "erin"}

    async def directory(req: resolve_pb2.ResolveNumberRequest) -> Reply:
        asked.append(req.number)
        return Reply(status=Reply.STATUS_FOUND, tenant_id="acme", user_id=owner[req.number])

    sub = await serve_directory(nc, directory)
    first = NumberDirectory(nc, redis, local_ttl_s=60)
    second = NumberDirectory(nc, redis, local_ttl_s=60)
    await first.start()
    await second.start()
    try:
        a = await first.resolve("+15550105")
        b = await second.resolve("+15550105")  # from Redis, not the directory
        assert isinstance(a, Reply) and isinstance(b, Reply)
        assert a.user_id == b.user_id == "erin"
        assert asked == ["+15550105"]
        # Memory copies answer even without Redis' entry...
        await redis.delete(cache_key("+15550105"))
        again = await first.resolve("+15550105")
        assert isinstance(again, Reply) and again.user_id == "erin"
        assert asked == ["+15550105"]
        # ...until number_changed, which every instance hears.
        owner["+15550105"] = "frank"
        change = resolve_pb2.NumberChanged(tenant_id="acme", number="+15550105", version=3)
        await nc.publish(subjects.number_changed("acme"), change.SerializeToString())
        await nc.flush()
        await asyncio.sleep(0.2)
        for instance in (first, second):
            moved = await instance.resolve("+15550105")
            assert isinstance(moved, Reply) and moved.user_id == "frank"
    finally:
        await first.stop()
        await second.stop()
        await sub.unsubscribe()


async def test_a_directory_that_restarted_empties_the_cache(
    links: tuple[NatsClient, aioredis.Redis],
) -> None:
    """A directory that crashed between storing a change and announcing it says so when it
    starts again; routing then trusts nothing it cached (Redis and in-process)."""
    nc, redis = links
    owner = {"+15550100": "alice", "+15550101": "bob"}
    asked: list[str] = []

    async def directory(req: resolve_pb2.ResolveNumberRequest) -> Reply:
        asked.append(req.number)
        return Reply(status=Reply.STATUS_FOUND, tenant_id="acme", user_id=owner[req.number])

    sub = await serve_directory(nc, directory)
    numbers = NumberDirectory(nc, redis, ttl_s=300, negative_ttl_s=30, local_ttl_s=60)
    await numbers.start()
    try:
        for number in owner:
            await numbers.resolve(number)
        owner["+15550100"] = "carol"  # stored, never announced: the directory crashed
        cached = await numbers.resolve("+15550100")
        assert isinstance(cached, Reply) and cached.user_id == "alice"
        await nc.publish(subjects.DIRECTORY_STARTED, b"")
        for _ in range(100):
            if not await redis.exists(cache_key("+15550100"), cache_key("+15550101")):
                break
            await asyncio.sleep(0.02)
        fresh = await numbers.resolve("+15550100")
        assert isinstance(fresh, Reply) and fresh.user_id == "carol"
        assert asked.count("+15550100") == 2
    finally:
        await numbers.stop()
        await sub.unsubscribe()


async def test_a_team_is_found_by_its_extension_else_by_its_number_within_the_tenant(
    links: tuple[NatsClient, aioredis.Redis],
) -> None:
    """The mailbox's forward: digits keyed on a phone name a team of the owner's tenant."""
    nc, redis = links
    teams = {
        ("acme", "extension", "700"): "tm_support",
        ("acme", "number", "+15550700"): "tm_sales",
    }
    asked: list[tuple[str, str, str]] = []

    async def directory(req: resolve_pb2.ResolveTeamRequest) -> resolve_pb2.ResolveTeamReply:
        key = req.WhichOneof("key") or ""
        asked.append((req.tenant_id, key, getattr(req, key) if key else ""))
        team_id = teams.get(asked[-1])
        if team_id is None:
            return resolve_pb2.ResolveTeamReply(status=Reply.STATUS_NOT_FOUND)
        return resolve_pb2.ResolveTeamReply(
            status=Reply.STATUS_FOUND, tenant_id=req.tenant_id, team_id=team_id
        )

    numbers = NumberDirectory(nc, redis, timeout_s=0.5)
    sub = await bus.serve(
        nc, subjects.DIRECTORY_RESOLVE_TEAM, "directory", resolve_pb2.ResolveTeamRequest, directory
    )
    try:
        assert await numbers.find_team("acme", "700") == "tm_support"
        assert asked == [("acme", "extension", "700")]
        asked.clear()
        assert await numbers.find_team("acme", "15550700") == "tm_sales"
        assert asked == [("acme", "extension", "15550700"), ("acme", "number", "+15550700")]
        assert await numbers.find_team("globex", "700") is None
        assert await numbers.find_team("acme", "") is None
    finally:
        await sub.unsubscribe()
    # No directory: nobody, not an error.
    assert await NumberDirectory(nc, redis, timeout_s=0.2).find_team("acme", "700") is None


async def test_a_colleague_is_found_by_extension_within_the_tenant(
    links: tuple[NatsClient, aioredis.Redis],
) -> None:
    """The mailbox's forward: digits keyed on a phone may be a colleague's extension."""
    nc, redis = links
    extensions = {("acme", "201"): "bob"}
    asked: list[tuple[str, str]] = []

    async def directory(req: resolve_pb2.ResolveUserRequest) -> Reply:
        asked.append((req.tenant_id, req.extension))
        user_id = extensions.get((req.tenant_id, req.extension))
        if user_id is None:
            return Reply(status=Reply.STATUS_NOT_FOUND)
        return Reply(status=Reply.STATUS_FOUND, tenant_id=req.tenant_id, user_id=user_id)

    numbers = NumberDirectory(nc, redis, timeout_s=0.5)
    sub = await bus.serve(
        nc, subjects.DIRECTORY_RESOLVE_USER, "directory", resolve_pb2.ResolveUserRequest, directory
    )
    try:
        assert await numbers.find_colleague("acme", "201") == "bob"
        assert await numbers.find_colleague("globex", "201") is None
        assert await numbers.find_colleague("acme", "") is None
        assert asked == [("acme", "201"), ("globex", "201")]
    finally:
        await sub.unsubscribe()
    # No directory: nobody, not an error.
    assert await NumberDirectory(nc, redis, timeout_s=0.2).find_colleague("acme", "201") is None
