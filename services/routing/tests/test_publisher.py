"""The event outbox (calls/publisher.py): lingering batches, and published(), which a call's
first dial waits on, against a JetStream stand-in whose acks the test controls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from nats.js.api import PubAck
from ringwise.events.v1 import call_pb2
from ringwise_kit.events import event_header
from ringwise_kit.subjects import CALL_ROUTED, CALL_STARTED
from ringwise_routing.calls.publisher import EventPublisher

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class JetStreamStandIn:
    """publish_async as nats-py has it: a future per message, acked when the test says."""

    def __init__(self, *, ack: bool = True) -> None:
        self.ack = ack
        self.fail = False
        self.writes: list[list[str]] = []  # the msg ids of each batch the outbox sent
        self._write: list[str] | None = None
        self.unacked: list[asyncio.Future[PubAck]] = []

    async def publish_async(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[PubAck]:
        if self.fail:
            raise ConnectionError("nats: connection closed")
        if self._write is None:
            self._write = []
            self.writes.append(self._write)
            asyncio.get_running_loop().call_soon(self._end_write)
        self._write.append(headers["Nats-Msg-Id"])
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        if self.ack:
            future.set_result(PubAck(stream="CALLS", seq=len(self.writes)))
        else:
            self.unacked.append(future)
        return future

    def _end_write(self) -> None:
        self._write = None


def started(call_id: str) -> call_pb2.CallStarted:
    return call_pb2.CallStarted(header=event_header("acme", call_id, CALL_STARTED, NOW))


def routed(call_id: str) -> call_pb2.CallRouted:
    return call_pb2.CallRouted(header=event_header("acme", call_id, CALL_ROUTED, NOW))


async def test_published_ends_the_linger_and_returns_once_every_event_is_acknowledged() -> None:
    js = JetStreamStandIn()
    # A linger this long would hold the events for the whole test.
    publisher = EventPublisher(cast(Any, js), linger_s=30.0)
    publisher.start()
    try:
        publisher.publish(started("c1"))
        publisher.publish(routed("c1"))
        assert await asyncio.wait_for(publisher.published(1.0), 2.0) is True
        assert js.writes == [["c1:started", "c1:routed"]]
        assert await publisher.published(1.0) is True  # nothing queued since
        assert len(js.writes) == 1
    finally:
        await publisher.stop(0.1)


async def test_events_published_without_waiting_still_linger_and_leave_together() -> None:
    js = JetStreamStandIn()
    publisher = EventPublisher(cast(Any, js), linger_s=0.05)
    publisher.start()
    try:
        publisher.publish(started("c1"))
        await asyncio.sleep(0.01)
        publisher.publish(started("c2"))
        await asyncio.sleep(0.01)
        assert js.writes == []
        assert await publisher.flush(1.0)
        assert js.writes == [["c1:started", "c2:started"]]
    finally:
        await publisher.stop(0.1)


async def test_published_gives_up_after_its_timeout_when_acks_do_not_come() -> None:
    js = JetStreamStandIn(ack=False)
    publisher = EventPublisher(cast(Any, js), linger_s=30.0)
    publisher.start()
    try:
        publisher.publish(started("c1"))
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await publisher.published(0.05) is False
        assert loop.time() - began < 1.0
        # Late acks still count: the events were stored after all.
        for future in js.unacked:
            future.set_result(PubAck(stream="CALLS", seq=1))
        assert await asyncio.wait_for(publisher.published(1.0), 2.0) is True
    finally:
        await publisher.stop(0.1)


async def test_while_nats_fails_published_does_not_wait_and_the_events_are_retried() -> None:
    js = JetStreamStandIn()
    js.fail = True
    publisher = EventPublisher(cast(Any, js), max_backoff_s=0.05, linger_s=30.0)
    publisher.start()
    try:
        publisher.publish(started("c1"))
        assert await asyncio.wait_for(publisher.published(5.0), 1.0) is False
        loop = asyncio.get_running_loop()
        began = loop.time()
        publisher.publish(started("c2"))
        assert await publisher.published(5.0) is False  # failing: at once
        assert loop.time() - began < 0.5
        js.fail = False
        assert await publisher.flush(2.0)
        sent = [msg_id for write in js.writes for msg_id in write]
        assert sent == ["c1:started", "c2:started"]
        assert await publisher.published(1.0) is True
    finally:
        await publisher.stop(0.1)
