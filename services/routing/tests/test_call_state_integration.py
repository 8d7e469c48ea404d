"""The calls' write-behind state (calls/call_state.py) against a real Redis: changes noted
during one linger share one round trip, a call that ends within it never reaches Redis, a
forget always deletes a key that may exist, and a Redis outage costs the calls nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from ringwise_dev.infra import Infra
from ringwise_routing.calls.call_state import KEY_PREFIX, CallStateStore, decode
from ringwise_routing.calls.cdr import CallRecord
from structlog.testing import capture_logs

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


class CountingRedis:
    """The real client, counting the round trips the store makes through it."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.round_trips = 0

    def pipeline(self, transaction: bool = True) -> Any:
        pipe = self.redis.pipeline(transaction=transaction)
        execute = pipe.execute

        async def counted(raise_on_error: bool = True) -> Any:
            self.round_trips += 1
            return await execute(raise_on_error)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self.redis, name)


@pytest_asyncio.fixture(loop_scope="session")
async def redis(infra: Infra) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(infra.endpoints.redis_url, decode_responses=True)
    yield client
    # The platform's routing shares this Redis: a test's calls left there would be ended as
    # orphans (with CDRs) at its next reconcile.
    async for key in client.scan_iter(match=KEY_PREFIX + "state-*"):
        await client.delete(key)
    await client.aclose()


def a_call(**changes: object) -> CallRecord:
    record = CallRecord(
        call_id=f"state-{uuid.uuid4().hex[:12]}",
        from_number="+441632960001",
        to_number="+15550100",
        started_at=datetime(2026, 12, 7, 12, 0, tzinfo=UTC),
        tenant_id="acme",
        user_id="alice",
    )
    for name, value in changes.items():
        setattr(record, name, value)
    return record


async def stored(redis: aioredis.Redis, call_id: str) -> str | None:
    value = await redis.get(KEY_PREFIX + call_id)
    return value if value is None else str(value)


async def test_changes_of_many_calls_share_one_round_trip_and_the_latest_wins(
    redis: aioredis.Redis,
) -> None:
    counting = CountingRedis(redis)
    store = CallStateStore(counting, linger_s=0.05)  # type: ignore[arg-type]
    records = [a_call() for _ in range(20)]
    for record in records:
        store.save(record, f"{record.call_id}-caller", [f"{record.call_id}-1"], None)
        store.save(record, f"{record.call_id}-caller", [f"{record.call_id}-1"], record.call_id)
    assert counting.round_trips == 0, "a save must not wait for Redis"
    await asyncio.sleep(0.2)
    assert counting.round_trips == 1
    for record in records:
        raw = await stored(redis, record.call_id)
        assert raw is not None
        state = decode(raw)
        assert state.bridge_id == record.call_id  # the second save of each call
        assert state.legs == (f"{record.call_id}-1",)
        assert await redis.ttl(KEY_PREFIX + record.call_id) > 23 * 3600


async def test_a_call_saved_and_forgotten_within_the_linger_never_reaches_redis(
    redis: aioredis.Redis,
) -> None:
    counting = CountingRedis(redis)
    store = CallStateStore(counting, linger_s=0.05)  # type: ignore[arg-type]
    record = a_call()
    store.save(record, "caller", ["leg"], None)
    store.forget(record.call_id)
    await store.flush()
    assert counting.round_trips == 0
    assert await stored(redis, record.call_id) is None


async def test_a_forget_deletes_what_was_written_even_while_it_is_being_written(
    redis: aioredis.Redis,
) -> None:
    store = CallStateStore(redis, linger_s=0.001)
    written, racing = a_call(), a_call()
    store.save(written, "caller", ["leg"], None)
    await store.flush()
    assert await stored(redis, written.call_id) is not None
    store.forget(written.call_id)
    # The other call's key is on its way to Redis when it is forgotten.
    store.save(racing, "caller", ["leg"], None)
    await asyncio.sleep(0.002)
    store.forget(racing.call_id)
    await store.flush()
    assert await stored(redis, written.call_id) is None
    assert await stored(redis, racing.call_id) is None


async def test_calls_left_by_an_earlier_instance_are_deleted_when_forgotten(
    redis: aioredis.Redis,
) -> None:
    earlier = CallStateStore(redis)
    left = a_call()
    earlier.save(left, "caller", ["leg"], left.call_id)
    await earlier.close()

    now = CallStateStore(redis)
    found = {s.record.call_id: s for s in await now.all()}
    assert found[left.call_id].bridge_id == left.call_id
    now.forget(left.call_id)  # adopted, then ended
    await now.flush()
    assert await stored(redis, left.call_id) is None


async def test_redis_down_loses_the_state_but_never_fails_the_call(infra: Infra) -> None:
    # Nothing listens on port 1: every round trip fails at once.
    unreachable = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    store = CallStateStore(unreachable, linger_s=0.001)
    record = a_call()
    with capture_logs() as logs:
        store.save(record, "caller", ["leg"], None)
        await store.flush()  # logged, not raised
        store.forget(record.call_id)
        await store.close()
    await unreachable.aclose()
    failures = [e for e in logs if e["event"] == "call_state_not_saved"]
    # The save, then the delete of a key that may have been written after all.
    assert [e["calls"] for e in failures] == [1, 1]


async def test_a_hurried_save_goes_at_once_with_what_other_calls_noted(
    redis: aioredis.Redis,
) -> None:
    # A call's first legs: its state must be in Redis before they are dialled, so the save
    # does not linger (a linger this long would otherwise hold it for the whole test).
    counting = CountingRedis(redis)
    store = CallStateStore(counting, linger_s=30.0)  # type: ignore[arg-type]
    other, ringing = a_call(), a_call()
    store.save(other, "caller", [], None)
    store.save(ringing, "caller", ["leg"], None, hurry=True)
    await asyncio.wait_for(store.written(), 2.0)
    assert counting.round_trips == 1
    assert await stored(redis, other.call_id) is not None
    assert await stored(redis, ringing.call_id) is not None
    await store.written()  # nothing noted since: no round trip
    assert counting.round_trips == 1


async def test_written_waits_for_changes_noted_while_a_write_is_in_flight(
    redis: aioredis.Redis,
) -> None:
    counting = CountingRedis(redis)
    store = CallStateStore(counting, linger_s=30.0)  # type: ignore[arg-type]
    first, second = a_call(), a_call()
    store.save(first, "caller", ["leg"], None, hurry=True)  # on its way
    store.save(second, "caller", ["leg"], None)  # must wait for it: one write at a time
    await asyncio.wait_for(store.written(), 2.0)
    assert counting.round_trips == 2
    assert await stored(redis, second.call_id) is not None


async def test_written_returns_when_what_it_waited_for_was_forgotten_unsent(
    redis: aioredis.Redis,
) -> None:
    counting = CountingRedis(redis)
    store = CallStateStore(counting, linger_s=30.0)  # type: ignore[arg-type]
    first, brief = a_call(), a_call()
    store.save(first, "caller", ["leg"], None, hurry=True)
    store.save(brief, "caller", ["leg"], None)
    waiting = asyncio.create_task(store.written())
    await asyncio.sleep(0)
    store.forget(brief.call_id)  # never sent: nothing left to write for it
    await asyncio.wait_for(waiting, 2.0)
    assert counting.round_trips == 1
    assert await stored(redis, brief.call_id) is None
