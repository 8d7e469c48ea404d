"""NATS and JetStream helpers shared by every service.

- connect(): a client that reconnects forever and logs link changes.
- ensure_stream()/ensure_consumer(): idempotent provisioning at start-up.
- publish_event(): protobuf payload, Nats-Msg-Id de-duplication, type header.
- DurableConsumer: a pull loop with explicit (acknowledged) acks, bounded redelivery with
  backoff, a dead-letter subject after N failed deliveries, and a graceful stop.
- serve()/request(): protobuf request/reply with typed errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from prometheus_client import Counter, Histogram

from ringwise_kit import subjects
from ringwise_kit.logs import get_logger

log = get_logger("ringwise_kit.bus")

TYPE_HEADER = "Ringwise-Type"
ERROR_HEADER = "Ringwise-Error"
MSG_ID_HEADER = "Nats-Msg-Id"

M = TypeVar("M", bound=Message)

CONSUMED = Counter(
    "ringwise_bus_messages_total",
    "Messages handled by durable consumers, by outcome",
    ["consumer", "outcome"],
)
HANDLE_SECONDS = Histogram(
    "ringwise_bus_handle_seconds", "Time spent handling one message", ["consumer"]
)
PUBLISHED = Counter(
    "ringwise_bus_published_total", "Events published to JetStream", ["subject_kind", "duplicate"]
)
# PUBLISHED's child per subject for publish_event_async (labels() costs a lock and a lookup).
_PUBLISHED_ASYNC: dict[str, Counter] = {}


async def connect(url: str, name: str) -> NatsClient:
    """Connect with unlimited reconnects; the service stays up while NATS restarts."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc))

    async def on_disconnect() -> None:
        log.warning("nats_disconnected")

    async def on_reconnect() -> None:
        log.info("nats_reconnected")

    return await nats.connect(
        servers=[url],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: Sequence[str]
    max_age_s: float = 14 * 24 * 3600
    duplicate_window_s: float = 120.0
    replicas: int = 1


CALLS = StreamSpec(subjects.CALLS_STREAM, [subjects.CALL_EVENTS])
RECORDINGS = StreamSpec(subjects.RECORDINGS_STREAM, [subjects.RECORDING_EVENTS])
DEAD_LETTERS = StreamSpec(subjects.DLQ_STREAM, [subjects.DLQ_EVENTS], max_age_s=30 * 24 * 3600)


async def ensure_stream(js: JetStreamContext, spec: StreamSpec) -> None:
    """Create the stream, or bring an existing one to this spec. Safe on every start-up."""
    config = StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=spec.max_age_s,
        duplicate_window=spec.duplicate_window_s,
        num_replicas=spec.replicas,
    )
    try:
        await js.stream_info(spec.name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(config)
            log.info("stream_created", stream=spec.name)
            return
        except nats.js.errors.BadRequestError:
            pass  # another instance created it between our two calls
    await js.update_stream(config)


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer. After max_deliver failed deliveries a message is dead-lettered."""

    stream: str
    durable: str
    filter_subjects: Sequence[str]
    max_deliver: int = 5
    backoff_s: Sequence[float] = (0.5, 2.0, 5.0, 15.0)
    ack_wait_s: float = 30.0
    max_ack_pending: int = 1000
    # Wait for the server to confirm each ack. Needed when the handler is not idempotent
    # (a lost ack would repeat its effect); an idempotent handler can save the round trip.
    confirm_acks: bool = True


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    config = ConsumerConfig(
        durable_name=spec.durable,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_s,
        # The loop dead-letters at max_deliver; the server limit is only a backstop.
        max_deliver=spec.max_deliver + 2,
        max_ack_pending=spec.max_ack_pending,
        filter_subjects=list(spec.filter_subjects) if len(spec.filter_subjects) > 1 else None,
        filter_subject=spec.filter_subjects[0] if len(spec.filter_subjects) == 1 else None,
    )
    await js.add_consumer(spec.stream, config)


def _subject_kind(subject: str) -> str:
    return subject.rsplit(".", 1)[-1]


async def publish_event(
    js: JetStreamContext, subject: str, event: Message, msg_id: str, timeout_s: float = 5.0
) -> bool:
    """Publish a protobuf event; returns False when JetStream saw msg_id already (a duplicate)."""
    ack = await js.publish(
        subject,
        event.SerializeToString(),
        timeout=timeout_s,
        headers={MSG_ID_HEADER: msg_id, TYPE_HEADER: event.DESCRIPTOR.full_name},
    )
    duplicate = bool(ack.duplicate)
    PUBLISHED.labels(_subject_kind(subject), str(duplicate).lower()).inc()
    return not duplicate


async def publish_event_async(
    js: JetStreamContext, subject: str, event: Message, msg_id: str
) -> asyncio.Future[PubAck]:
    """Publish without waiting: events published in one go share one socket write, and their
    acks are awaited together (the future has no timeout of its own: wait with one)."""
    future = await js.publish_async(
        subject,
        event.SerializeToString(),
        headers={MSG_ID_HEADER: msg_id, TYPE_HEADER: event.DESCRIPTOR.full_name},
    )
    counter = _PUBLISHED_ASYNC.get(subject)
    if counter is None:  # one child per subject, resolved once (labels() is not free)
        counter = _PUBLISHED_ASYNC[subject] = PUBLISHED.labels(_subject_kind(subject), "unknown")
    counter.inc()
    return future


def message_type(msg: Msg) -> str:
    return (msg.headers or {}).get(TYPE_HEADER, "")


Handler = Callable[[Msg], Awaitable[None]]
# Handles a whole fetched batch; returns, per message, None (done) or the exception it raised.
BatchHandler = Callable[[list[Msg]], Awaitable[list[Exception | None]]]


class PermanentError(Exception):
    """A message that can never succeed (e.g. undecodable): dead-letter it at once."""


@dataclass
class DurableConsumer:
    """Pull loop over one durable consumer with explicit acks.

    The handler must be idempotent: a crash between its side effect and the ack means the
    message comes again (at-least-once delivery + idempotent handler = exactly-once effect).
    Give either `handler` (one message at a time) or `batch_handler` (a fetched batch at
    once, e.g. one database write for many messages).

    Every socket write costs a context switch on the server side too, so the loop works in
    batches: after a short batch it lingers (linger_s) to let messages gather, and the acks of
    a batch leave together.
    """

    js: JetStreamContext
    spec: ConsumerSpec
    handler: Handler | None = None
    batch_handler: BatchHandler | None = None
    batch: int = 100
    fetch_timeout_s: float = 1.0
    linger_s: float = 0.05
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _sub: JetStreamContext.PullSubscription | None = field(default=None, init=False)

    @property
    def connected(self) -> bool:
        """Ready: subscribed and the pull loop is alive."""
        return self._task is not None and not self._task.done()

    def __post_init__(self) -> None:
        if (self.handler is None) == (self.batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")

    async def start(self) -> None:
        await ensure_consumer(self.js, self.spec)
        self._sub = await self.js.pull_subscribe_bind(
            durable=self.spec.durable, stream=self.spec.stream
        )
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.spec.durable}")

    async def stop(self) -> None:
        """Stop fetching, let the batch in hand finish, then return (for SIGTERM)."""
        self._stopping.set()
        if self._task:
            await self._task
        if self._sub:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _run(self) -> None:
        assert self._sub is not None
        while not self._stopping.is_set():
            try:
                msgs = await self._sub.fetch(self.batch, timeout=self.fetch_timeout_s)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                return
            except Exception as exc:
                log.warning("consumer_fetch_failed", consumer=self.spec.durable, error=str(exc))
                await asyncio.sleep(0.5)
                continue
            if not msgs:  # nats-py can return an empty batch (e.g. after a status message)
                continue
            # Finish the batch even when stopping: those messages are already ours and
            # would otherwise only come back after ack_wait.
            try:
                await self._handle_batch(msgs)
            except Exception:
                # Never let the loop die: unacked messages come back after ack_wait.
                log.exception("consumer_batch_failed", consumer=self.spec.durable)
                await asyncio.sleep(0.5)
            if len(msgs) < self.batch and self.linger_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.linger_s)

    async def _handle_batch(self, msgs: list[Msg]) -> None:
        durable = self.spec.durable
        started = time.perf_counter()
        if self.batch_handler is not None:
            outcomes = await self.batch_handler(msgs)
        else:
            assert self.handler is not None
            outcomes = []
            for msg in msgs:
                try:
                    await self.handler(msg)
                    outcomes.append(None)
                except Exception as exc:
                    outcomes.append(exc)
        HANDLE_SECONDS.labels(durable).observe((time.perf_counter() - started) / len(msgs))
        done = [msg for msg, outcome in zip(msgs, outcomes, strict=True) if outcome is None]
        for msg, outcome in zip(msgs, outcomes, strict=True):
            if outcome is not None:
                await self._failed(msg, outcome)
        await self._ack(done)

    async def _ack(self, msgs: list[Msg]) -> None:
        if not msgs:
            return
        durable = self.spec.durable
        results: list[object]
        if self.spec.confirm_acks:
            results = list(
                await asyncio.gather(*(msg.ack_sync() for msg in msgs), return_exceptions=True)
            )
        else:
            results = []
            for msg in msgs:
                try:
                    await msg.ack()
                    results.append(None)
                except Exception as exc:
                    results.append(exc)
        for msg, result in zip(msgs, results, strict=True):
            if isinstance(result, BaseException):
                # The effect is stored; redelivery will find it done (idempotent handler).
                log.warning("ack_failed", consumer=durable, subject=msg.subject, error=repr(result))
            else:
                CONSUMED.labels(durable, "ok").inc()

    async def _failed(self, msg: Msg, exc: Exception) -> None:
        delivered = msg.metadata.num_delivered or 1
        permanent = isinstance(exc, PermanentError | DecodeError)
        if permanent or delivered >= self.spec.max_deliver:
            await self._dead_letter(msg, exc, delivered)
            return
        delay = self.spec.backoff_s[min(delivered, len(self.spec.backoff_s)) - 1]
        log.warning(
            "message_failed_will_retry",
            consumer=self.spec.durable,
            subject=msg.subject,
            delivered=delivered,
            retry_in_s=delay,
            error=repr(exc),
        )
        CONSUMED.labels(self.spec.durable, "retry").inc()
        with contextlib.suppress(Exception):
            await msg.nak(delay=delay)

    async def _dead_letter(self, msg: Msg, exc: Exception, delivered: int) -> None:
        headers = dict(msg.headers or {})
        headers.pop(MSG_ID_HEADER, None)
        meta = msg.metadata
        headers.update(
            {
                "Ringwise-Original-Subject": msg.subject,
                "Ringwise-Original-Stream": meta.stream or "",
                "Ringwise-Original-Sequence": str(meta.sequence.stream if meta.sequence else ""),
                "Ringwise-Deliveries": str(delivered),
                ERROR_HEADER: repr(exc)[:500],
                # One dead letter per original message even if this step is retried.
                MSG_ID_HEADER: f"dlq:{self.spec.durable}:{meta.stream}:"
                f"{meta.sequence.stream if meta.sequence else msg.subject}",
            }
        )
        try:
            await self.js.publish(
                subjects.dead_letter(self.spec.durable), msg.data, headers=headers
            )
        except Exception as pub_exc:
            # Without a dead letter stored, keep the message: never lose data.
            log.error("dead_letter_failed", consumer=self.spec.durable, error=repr(pub_exc))
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.spec.backoff_s[-1])
            return
        log.error(
            "message_dead_lettered",
            consumer=self.spec.durable,
            subject=msg.subject,
            delivered=delivered,
            error=repr(exc),
        )
        CONSUMED.labels(self.spec.durable, "dead_letter").inc()
        with contextlib.suppress(Exception):
            await msg.ack_sync()


class RemoteError(Exception):
    """The responder answered with an error."""


async def request(
    nc: NatsClient, subject: str, req: Message, reply_type: type[M], timeout_s: float = 2.0
) -> M:
    """Protobuf request/reply. Raises RemoteError, or nats TimeoutError/NoRespondersError."""
    msg = await nc.request(subject, req.SerializeToString(), timeout=timeout_s)
    error = (msg.headers or {}).get(ERROR_HEADER)
    if error:
        raise RemoteError(error)
    reply = reply_type()
    reply.ParseFromString(msg.data)
    return reply


async def serve(
    nc: NatsClient,
    subject: str,
    queue: str,
    request_type: type[M],
    handler: Callable[[M], Awaitable[Message]],
) -> Subscription:
    """Answer protobuf requests on subject in a queue group; errors go back as a header."""

    async def on_request(msg: Msg) -> None:
        req = request_type()
        try:
            req.ParseFromString(msg.data)
            reply = await handler(req)
        except Exception as exc:
            log.warning("request_failed", subject=subject, error=repr(exc))
            if msg.reply:
                await nc.publish(msg.reply, b"", headers={ERROR_HEADER: type(exc).__name__})
            return
        if msg.reply:
            await nc.publish(msg.reply, reply.SerializeToString())

    return await nc.subscribe(subject, queue=queue, cb=on_request)
