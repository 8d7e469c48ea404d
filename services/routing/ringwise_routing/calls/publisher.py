"""Publishes call events without ever holding up a call.

Events go into an in-order outbox; one worker publishes them to JetStream and retries with
backoff while NATS is away. event_id is the Nats-Msg-Id, so a retry after an ack that got
lost is de-duplicated by JetStream.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.js import JetStreamContext
from prometheus_client import Gauge
from ringwise_kit import bus
from ringwise_kit.events import CallEvent, subject_for
from ringwise_kit.logs import get_logger

log = get_logger(__name__)

OUTBOX_DEPTH = Gauge("ringwise_routing_outbox_depth", "Call events waiting to be published")


class EventPublisher:
    def __init__(self, js: JetStreamContext, max_backoff_s: float = 5.0) -> None:
        self._js = js
        self._queue: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._max_backoff_s = max_backoff_s
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="event-publisher")

    def publish(self, event: CallEvent) -> None:
        self._queue.put_nowait(event)
        OUTBOX_DEPTH.set(self._queue.qsize())

    async def flush(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty (at shutdown); False if events are left."""
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
            event = await self._queue.get()
            backoff = 0.1
            while True:
                try:
                    await bus.publish_event(
                        self._js, subject_for(event), event, event.header.event_id
                    )
                    break
                except Exception as exc:
                    log.warning(
                        "event_publish_failed",
                        event_id=event.header.event_id,
                        error=repr(exc),
                        retry_in_s=backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff_s)
            self._queue.task_done()
            OUTBOX_DEPTH.set(self._queue.qsize())
