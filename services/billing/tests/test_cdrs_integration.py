"""Billing's CDR store, consumer and read API against real NATS JetStream and Mongo-wire."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.msg import Msg
from pymongo import AsyncMongoClient
from ringwise.events.v1 import call_pb2
from ringwise_billing.cdrs import consumer, http
from ringwise_billing.cdrs.store import CdrStore, cdr_document
from ringwise_dev.infra import Infra
from ringwise_kit import bus, subjects
from ringwise_kit.events import event_header, to_timestamp

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

_dbs = itertools.count()
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def call_ended(call_id: str, tenant: str = "acme", offset_s: int = 0) -> call_pb2.CallEnded:
    ended = T0 + timedelta(seconds=offset_s + 10)
    return call_pb2.CallEnded(
        header=event_header(tenant, call_id, subjects.CALL_ENDED, ended),
        direction=call_pb2.DIRECTION_INBOUND,
        from_number="+441111",
        to_number="+15550100",
        user_id="alice",
        started_at=to_timestamp(T0 + timedelta(seconds=offset_s)),
        answered_at=to_timestamp(T0 + timedelta(seconds=offset_s + 2)),
        ended_at=to_timestamp(ended),
        billable_seconds=8,
        billable_ms=8000,
        duration_ms=10000,
        disposition=call_pb2.DISPOSITION_ANSWERED,
        hangup_cause=16,
        hangup_by="caller",
    )


@pytest_asyncio.fixture(loop_scope="session")
async def store(infra: Infra) -> AsyncIterator[CdrStore]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infra.endpoints.mongo_url, tz_aware=True
    )
    cdrs = CdrStore(client, f"billing_test_{next(_dbs)}")
    await cdrs.ensure_indexes()
    yield cdrs
    await client.close()


async def test_a_cdr_is_stored_once_however_often_it_is_delivered(store: CdrStore) -> None:
    doc = cdr_document(call_ended("c-once"), datetime.now(UTC))
    assert await store.insert_once(doc) is True
    assert await store.insert_once(doc) is False
    assert await store.count() == 1
    stored = await store.get("c-once")
    assert stored is not None
    assert stored["billable_seconds"] == 8
    assert stored["answered_at"] == T0 + timedelta(seconds=2)
    assert stored["disposition"] == "DISPOSITION_ANSWERED"


async def test_a_crash_between_store_and_ack_redelivers_without_a_second_cdr(
    infra: Infra, store: CdrStore
) -> None:
    """The handler stores, then 'crashes' before the ack; redelivery finds it stored."""
    nc = await bus.connect(infra.endpoints.nats_url, "billing-test")
    js = nc.jetstream()
    spec = bus.StreamSpec("BILLTEST", ["billtest.call.>"])
    await bus.ensure_stream(js, spec)
    await bus.ensure_stream(js, bus.DEAD_LETTERS)
    real = consumer.batch_handler(store)
    deliveries: list[int] = []

    async def crash_after_storing_once(msgs: list[Msg]) -> list[Exception | None]:
        deliveries.extend(msg.metadata.num_delivered or 0 for msg in msgs)
        outcomes = await real(msgs)
        if len(deliveries) == 1:
            return [ConnectionError("process died before the ack")]
        return outcomes

    durable = bus.DurableConsumer(
        js,
        bus.ConsumerSpec(
            spec.name, "billtest", ["billtest.call.>"], backoff_s=(0.05,), ack_wait_s=5
        ),
        batch_handler=crash_after_storing_once,
        fetch_timeout_s=0.2,
    )
    await durable.start()
    event = call_ended("c-crash")
    await bus.publish_event(js, "billtest.call.acme.ended", event, event.header.event_id)
    for _ in range(200):
        if len(deliveries) >= 2:
            break
        await asyncio.sleep(0.05)
    await durable.stop()
    await nc.drain()
    assert deliveries == [1, 2]
    assert [d["_id"] for d in await store.list(tenant_id="acme", after=None, limit=10)].count(
        "c-crash"
    ) == 1


class FakeMsg:
    """What the batch handler reads of a JetStream message."""

    def __init__(self, event: call_pb2.CallStarted | call_pb2.CallEnded) -> None:
        self.subject = "ringwise.v1.call.acme.x"
        self.headers = {bus.TYPE_HEADER: event.DESCRIPTOR.full_name}
        self.data = event.SerializeToString()


async def test_a_batch_stores_new_cdrs_skips_known_ones_and_refuses_wrong_events(
    store: CdrStore,
) -> None:
    await store.insert_once(cdr_document(call_ended("b-known"), T0))
    batch = [
        FakeMsg(call_ended("b-new-1")),
        FakeMsg(call_ended("b-known")),
        FakeMsg(call_pb2.CallStarted()),
        FakeMsg(call_ended("b-new-2")),
        FakeMsg(call_ended("b-new-1")),  # the same CDR twice in one batch
    ]
    outcomes = await consumer.batch_handler(store)(batch)  # type: ignore[arg-type]
    assert [type(o).__name__ if o else None for o in outcomes] == [
        None,
        None,
        "PermanentError",
        None,
        None,
    ]
    ids = {d["_id"] for d in await store.list(tenant_id="acme", after=None, limit=100)}
    assert {"b-new-1", "b-new-2", "b-known"} <= ids
    assert await store.count() == len(ids)


async def api(store: CdrStore) -> TestClient[web.Request, web.Application]:
    app = web.Application()
    app[http.STORE_KEY] = store
    http.add_routes(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_the_cdr_api_pages_filters_and_rejects_bad_input(store: CdrStore) -> None:
    for i in range(5):
        await store.insert_once(cdr_document(call_ended(f"p{i}", offset_s=i), T0))
    await store.insert_once(cdr_document(call_ended("other", tenant="globex"), T0))
    client = await api(store)
    try:
        first = await (await client.get("/v1/cdrs?tenant_id=acme&limit=3")).json()
        assert [c["call_id"] for c in first["items"]] == ["p0", "p1", "p2"]
        rest = await (
            await client.get(f"/v1/cdrs?tenant_id=acme&limit=3&cursor={first['next_cursor']}")
        ).json()
        assert [c["call_id"] for c in rest["items"]] == ["p3", "p4"]
        assert "next_cursor" not in rest
        assert rest["items"][0]["answered_at"] == (T0 + timedelta(seconds=5)).isoformat()

        one = await client.get("/v1/cdrs/other")
        assert one.status == 200
        assert (await one.json())["tenant_id"] == "globex"
        missing = await client.get("/v1/cdrs/nope")
        assert missing.status == 404
        assert missing.content_type == "application/problem+json"

        for bad in ("limit=0", "limit=abc", "limit=5000", "cursor=%%%", "cursor=bm9waXBl"):
            resp = await client.get(f"/v1/cdrs?{bad}")
            assert resp.status == 400, bad
            assert resp.content_type == "application/problem+json"
            problem = await resp.json()
            assert problem["status"] == 400
            assert problem["errors"][0]["name"] in ("limit", "cursor")
    finally:
        await client.close()
