"""Publishes call events without ever holding up a call.

Events go into an outbox; one worker publishes everything queued in one go (one socket
write, acks awaited together) and retries what was not acknowledged, with backoff, while
NATS is away. After the first event of a batch it lingers a moment (linger_s) so that a
call's next event (CallAnswered a few milliseconds after CallRouted, say) and other calls'
events leave in the same write: every write costs a wake-up here and in NATS.

Some events may not wait that long: a call's CallStarted and CallRouted must be stored before
its first leg is dialled (a crash while phones ring must not leave the call half told).
hurry() ends the linger at once, and published() waits, briefly, for the acks of everything
queued so far; while NATS is away it does not wait at all (calls never stall on events).

event_id is the Nats-Msg-Id, so a retry after an ack that got lost is de-duplicated by
JetStream. A retried event may land after a later event of the same call;
consumers key on the event kind, not on order.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.js import JetStreamContext
from nats.js.api import PubAck
from prometheus_client import Gauge
from ringwise_kit import bus
from ringwise_kit.events import OutboxEvent, subject_for
from ringwise_kit.logs import get_logger

log = get_logger(__name__)

MAX_BATCH = 256
ACK_TIMEOUT_S = 5.0
# Events reach consumers at most this much later; nothing downstream is that urgent.
LINGER_S = 0.02

OUTBOX_DEPTH = Gauge("ringwise_routing_outbox_depth", "Call events waiting to be published")


class EventPublisher:
    def __init__(
        self, js: JetStreamContext, max_backoff_s: float = 5.0, linger_s: float = LINGER_S
    ) -> None:
        self._js = js
        self._linger_s = linger_s
        self._queue: asyncio.Queue[OutboxEvent] = asyncio.Queue()
        self._max_backoff_s = max_backoff_s
        self._worker: asyncio.Task[None] | None = None
        # Events ever queued, and ever acknowledged (in order: batches go one at a time).
        self._queued = 0
        self._acknowledged = 0
        # published() callers: how many events must be acknowledged, and their wake-up.
        self._waiters: list[tuple[int, asyncio.Future[bool]]] = []
        self._linger_end: asyncio.Future[None] | None = None
        self._hurry = False
        self._failing = False

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="event-publisher")

    def publish(self, event: OutboxEvent) -> None:
        self._queued += 1
        self._queue.put_nowait(event)  # the depth gauge is set by the worker, per batch

    def hurry(self) -> None:
        """Send what is queued without lingering (what is in flight already needs nothing)."""
        if self._linger_end is not None and not self._linger_end.done():
            self._linger_end.set_result(None)
        elif not self._queue.empty():
            self._hurry = True  # for the batch after the one in flight

    async def published(self, timeout_s: float) -> bool:
        """Wait until every event queued so far is acknowledged; False if that takes longer
        than timeout_s or NATS is failing now (the events stay queued and are retried)."""
        target = self._queued
        if self._acknowledged >= target:
            return True
        if self._failing:
            return False
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        self.hurry()
        try:
            async with asyncio.timeout(timeout_s):
                return await waiter
        except TimeoutError:
            return False

    async def flush(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty (at shutdown); False if events are left."""
        self.hurry()
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            log.error("outbox_not_flushed", left=self._queue.qsize())
            return False
        return True

    async def stop(self, timeout_s: float = 5.0) -> None:
        await self.flush(timeout_s)
        if self._worker:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._linger_s > 0 and self._queue.empty() and not self._hurry:
                await self._linger()
            self._hurry = False
            while not self._queue.empty() and len(batch) < MAX_BATCH:
                batch.append(self._queue.get_nowait())
            OUTBOX_DEPTH.set(self._queue.qsize() + len(batch))
            pending = batch
            backoff = 0.1
            while pending:
                pending = await self._publish(pending)
                if pending:
                    self._failing = True
                    self._wake_waiters()
                    log.warning(
                        "event_publish_failed",
                        events=len(pending),
                        first_event_id=pending[0].header.event_id,
                        retry_in_s=backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff_s)
            for _ in batch:
                self._queue.task_done()
            self._acknowledged += len(batch)
            self._failing = False
            self._wake_waiters()
            OUTBOX_DEPTH.set(self._queue.qsize())

    async def _linger(self) -> None:
        """Wait linger_s for more events, or less if hurried."""
        loop = asyncio.get_running_loop()
        self._linger_end = end = loop.create_future()
        timer = loop.call_later(self._linger_s, _set_if_pending, end)
        try:
            await end
        finally:
            timer.cancel()
            self._linger_end = None

    def _wake_waiters(self) -> None:
        """Answer the published() callers whose events are all acknowledged (True), or all
        of them, False, while NATS is failing."""
        waiting = []
        for target, waiter in self._waiters:
            if waiter.done():
                continue  # timed out
            if self._acknowledged >= target:
                waiter.set_result(True)
            elif self._failing:
                waiter.set_result(False)
            else:
                waiting.append((target, waiter))
        self._waiters = waiting

    async def _publish(self, events: list[OutboxEvent]) -> list[OutboxEvent]:
        """Publish all; return those not acknowledged."""
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for event in events:
                futures.append(
                    await bus.publish_event_async(
                        self._js, subject_for(event), event, event.header.event_id
                    )
                )
        except Exception as exc:
            log.warning("event_publish_error", error=repr(exc))
        if futures:
            await asyncio.wait(futures, timeout=ACK_TIMEOUT_S)
        failed = [
            event
            for index, event in enumerate(events)
            if index >= len(futures) or not _acknowledged(futures[index])
        ]
        for future in futures:
            if not future.done():
                future.cancel()
        return failed


def _set_if_pending(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _acknowledged(future: asyncio.Future[PubAck]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None
