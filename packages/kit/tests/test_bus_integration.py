"""The kit's JetStream helpers against a real nats-server (JetStream on)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import nats.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from ringwise.directory.v1 import resolve_pb2
from ringwise_dev.infra import Infra
from ringwise_kit import bus

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

_names = itertools.count()


@pytest_asyncio.fixture(loop_scope="session")
async def nc(infra: Infra) -> AsyncIterator[NatsClient]:
    client = await bus.connect(infra.endpoints.nats_url, "kit-tests")
    yield client
    await client.drain()


async def fresh_stream(nc: NatsClient) -> tuple[bus.StreamSpec, str]:
    n = next(_names)
    spec = bus.StreamSpec(f"KITTEST{n}", [f"kittest.{n}.>"], duplicate_window_s=60)
    js = nc.jetstream()
    await bus.ensure_stream(js, spec)
    await bus.ensure_stream(js, bus.DEAD_LETTERS)
    return spec, f"kittest.{n}"


def event(number: str) -> resolve_pb2.ResolveNumberRequest:
    return resolve_pb2.ResolveNumberRequest(number=number)


async def until(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_provisioning_is_idempotent(nc: NatsClient) -> None:
    js = nc.jetstream()
    spec, prefix = await fresh_stream(nc)
    await bus.ensure_stream(js, spec)
    consumer = bus.ConsumerSpec(spec.name, "twice", [f"{prefix}.>"])
    await bus.ensure_consumer(js, consumer)
    await bus.ensure_consumer(js, consumer)
    info = await js.consumer_info(spec.name, "twice")
    assert info.config.durable_name == "twice"
    assert (await js.stream_info(spec.name)).config.duplicate_window == 60


async def test_a_republished_event_id_is_deduplicated(nc: NatsClient) -> None:
    js = nc.jetstream()
    spec, prefix = await fresh_stream(nc)
    assert await bus.publish_event(js, f"{prefix}.a", event("+1"), "id-1") is True
    assert await bus.publish_event(js, f"{prefix}.a", event("+1"), "id-1") is False
    assert await bus.publish_event(js, f"{prefix}.a", event("+2"), "id-2") is True
    assert (await js.stream_info(spec.name)).state.messages == 2


async def test_a_failing_message_is_retried_with_backoff_then_succeeds(nc: NatsClient) -> None:
    js = nc.jetstream()
    spec, prefix = await fresh_stream(nc)
    deliveries: list[int] = []
    handled: list[str] = []

    async def flaky(msg: Msg) -> None:
        deliveries.append(msg.metadata.num_delivered or 0)
        if len(deliveries) < 3:
            raise RuntimeError("store briefly down")
        request = resolve_pb2.ResolveNumberRequest()
        request.ParseFromString(msg.data)
        handled.append(request.number)

    consumer = bus.DurableConsumer(
        js,
        bus.ConsumerSpec(spec.name, "flaky", [f"{prefix}.>"], backoff_s=(0.05, 0.1)),
        flaky,
        fetch_timeout_s=0.2,
    )
    await consumer.start()
    await bus.publish_event(js, f"{prefix}.x", event("+44"), "retry-1")
    await until(lambda: handled)
    await consumer.stop()
    assert deliveries == [1, 2, 3]
    assert handled == ["+44"]
    info = await js.consumer_info(spec.name, "flaky")
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_after_n_failed_deliveries_a_message_is_dead_lettered(nc: NatsClient) -> None:
    js = nc.jetstream()
    spec, prefix = await fresh_stream(nc)
    deliveries = 0

    async def always_fails(_msg: Msg) -> None:
        nonlocal deliveries
        deliveries += 1
        raise RuntimeError("poison")

    durable = f"poison{spec.name.lower()}"
    dlq = await js.pull_subscribe(f"ringwise.v1.dlq.{durable}", stream="DLQ")
    consumer = bus.DurableConsumer(
        js,
        bus.ConsumerSpec(spec.name, durable, [f"{prefix}.>"], max_deliver=3, backoff_s=(0.05,)),
        always_fails,
        fetch_timeout_s=0.2,
    )
    await consumer.start()
    await bus.publish_event(js, f"{prefix}.bad", event("+99"), "poison-1")
    [dead] = await dlq.fetch(1, timeout=10)
    await consumer.stop()
    assert deliveries == 3
    headers = dead.headers or {}
    assert headers["Ringwise-Original-Subject"] == f"{prefix}.bad"
    assert headers["Ringwise-Deliveries"] == "3"
    assert "poison" in headers[bus.ERROR_HEADER]
    assert headers[bus.TYPE_HEADER] == "ringwise.directory.v1.ResolveNumberRequest"
    assert dead.data == event("+99").SerializeToString()
    info = await js.consumer_info(spec.name, durable)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_an_undecodable_message_is_dead_lettered_at_once(nc: NatsClient) -> None:
    js = nc.jetstream()
    spec, prefix = await fresh_stream(nc)
    durable = f"permanent{spec.name.lower()}"
    dlq = await js.pull_subscribe(f"ringwise.v1.dlq.{durable}", stream="DLQ")
    seen = 0

    async def strict(_msg: Msg) -> None:
        nonlocal seen
        seen += 1
        raise bus.PermanentError("unknown type")

    consumer = bus.DurableConsumer(
        js, bus.ConsumerSpec(spec.name, durable, [f"{prefix}.>"]), strict, fetch_timeout_s=0.2
    )
    await consumer.start()
    await js.publish(f"{prefix}.junk", b"\xff\xff")
    [dead] = await dlq.fetch(1, timeout=10)
    await consumer.stop()
    assert seen == 1
    assert (dead.headers or {})["Ringwise-Deliveries"] == "1"


async def test_a_stopped_consumer_loses_nothing_and_its_successor_resumes(
    nc: NatsClient,
) -> None:
    js = nc.jetstream()
    spec, prefix = await fresh_stream(nc)
    seen: list[str] = []
    first_batch_done = asyncio.Event()

    async def slow(msg: Msg) -> None:
        request = resolve_pb2.ResolveNumberRequest()
        request.ParseFromString(msg.data)
        seen.append(request.number)
        if len(seen) == 5:
            first_batch_done.set()
        await asyncio.sleep(0.01)

    for i in range(40):
        await bus.publish_event(js, f"{prefix}.n", event(f"+{i}"), f"n-{i}")
    consumer_spec = bus.ConsumerSpec(spec.name, "resumable", [f"{prefix}.>"])
    first = bus.DurableConsumer(js, consumer_spec, slow, batch=5, fetch_timeout_s=0.2)
    await first.start()
    await first_batch_done.wait()
    await first.stop()
    stopped_at = len(seen)
    assert 5 <= stopped_at < 40
    second = bus.DurableConsumer(js, consumer_spec, slow, batch=5, fetch_timeout_s=0.2)
    await second.start()
    await until(lambda: len(set(seen)) == 40)
    await second.stop()
    assert sorted(set(seen)) == sorted(f"+{i}" for i in range(40))
    assert len(seen) == 40  # a graceful stop acks what it handled: nothing comes twice


async def test_request_reply_carries_replies_and_errors(nc: NatsClient) -> None:
    async def answer(req: resolve_pb2.ResolveNumberRequest) -> resolve_pb2.ResolveNumberReply:
        if req.number == "+0":
            raise LookupError("broken")
        return resolve_pb2.ResolveNumberReply(
            status=resolve_pb2.ResolveNumberReply.STATUS_FOUND, user_id=f"u{req.number}"
        )

    sub = await bus.serve(nc, "kittest.rpc", "q", resolve_pb2.ResolveNumberRequest, answer)
    reply = await bus.request(nc, "kittest.rpc", event("+7"), resolve_pb2.ResolveNumberReply)
    assert reply.user_id == "u+7"
    with pytest.raises(bus.RemoteError, match="LookupError"):
        await bus.request(nc, "kittest.rpc", event("+0"), resolve_pb2.ResolveNumberReply)
    await sub.unsubscribe()
    with pytest.raises(nats.errors.NoRespondersError):
        await bus.request(nc, "kittest.rpc", event("+7"), resolve_pb2.ResolveNumberReply)


async def test_a_batch_handler_that_blows_up_does_not_stop_the_consumer(nc: NatsClient) -> None:
    js = nc.jetstream()
    spec, prefix = await fresh_stream(nc)
    calls = 0
    handled: list[str] = []

    async def fragile(msgs: list[Msg]) -> list[Exception | None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug in the batch handler")
        for msg in msgs:
            request = resolve_pb2.ResolveNumberRequest()
            request.ParseFromString(msg.data)
            handled.append(request.number)
        return [None] * len(msgs)

    consumer = bus.DurableConsumer(
        js,
        bus.ConsumerSpec(spec.name, "fragile", [f"{prefix}.>"], ack_wait_s=1.0),
        batch_handler=fragile,
        fetch_timeout_s=0.2,
    )
    await consumer.start()
    await bus.publish_event(js, f"{prefix}.x", event("+5"), "fragile-1")
    await until(lambda: handled, timeout_s=15)
    assert consumer.connected
    await consumer.stop()
    assert not consumer.connected
    assert handled == ["+5"]
    assert calls >= 2


async def test_a_consumer_takes_exactly_one_kind_of_handler() -> None:
    spec = bus.ConsumerSpec("S", "d", ["x.>"])
    with pytest.raises(ValueError, match="exactly one"):
        bus.DurableConsumer(None, spec)  # type: ignore[arg-type]
