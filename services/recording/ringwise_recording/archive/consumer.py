"""Consumes RecordingFinished (durable "recording-archive") and archives each recording.

At-least-once delivery + an archiver that resumes from its recorded state = each recording
stored exactly once. While a long upload runs, the message's ack deadline is pushed back
(in-progress acks), so JetStream does not hand it to another worker meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter
from ringwise.events.v1 import recording_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.ari import AriClient, AriInstances, AriNotFound, UnknownInstance
from ringwise_kit.events import to_timestamp
from ringwise_kit.logs import get_logger

from ringwise_recording.archive.archiver import Archiver, SourceMissing

log = get_logger(__name__)

ARCHIVED = Counter("ringwise_recording_archived_total", "Recordings archived", ["outcome"])
HEARTBEAT_S = 10.0

CONSUMER = bus.ConsumerSpec(
    stream=subjects.RECORDINGS_STREAM,
    durable="recording-archive",
    filter_subjects=[subjects.recording_events_of_kind(subjects.RECORDING_FINISHED)],
    ack_wait_s=3 * HEARTBEAT_S,
    max_deliver=10,
    backoff_s=(1.0, 2.0, 5.0, 15.0, 30.0, 60.0),
    max_ack_pending=64,
)


class AriRecordings:
    """Asterisk's stored recordings, through the ARI REST API of the Asterisk (pod) that
    recorded each one (ringwise_kit.ari.instances)."""

    def __init__(self, asterisks: AriInstances) -> None:
        self._asterisks = asterisks

    async def _ari(self, instance: str) -> AriClient:
        try:
            return await self._asterisks.client(instance)
        except UnknownInstance as exc:
            raise bus.PermanentError(str(exc)) from None

    async def stream(self, name: str, instance: str) -> AsyncIterator[bytes]:
        ari = await self._ari(instance)
        try:
            async for chunk in ari.stored_recording_chunks(name):
                yield chunk
        except AriNotFound:
            raise SourceMissing(name) from None

    async def delete(self, name: str, instance: str) -> bool:
        return await (await self._ari(instance)).delete_stored_recording(name)


def decode_finished(msg: Msg) -> recording_pb2.RecordingFinished:
    kind = bus.message_type(msg)
    if kind != recording_pb2.RecordingFinished.DESCRIPTOR.full_name:
        raise bus.PermanentError(f"archive consumer got {kind!r} on {msg.subject}")
    event = recording_pb2.RecordingFinished()
    event.ParseFromString(msg.data)
    if event.asterisk_name.startswith(subjects.VOICEMAIL_RECORDING_NAME_PREFIX):
        # A voicemail deposit is voicemail's to store and delete: never archive or delete it.
        raise bus.PermanentError(f"{event.asterisk_name!r} is a voicemail deposit, not a call's")
    return event


async def _heartbeat(msgs: list[Msg]) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        for msg in msgs:
            with contextlib.suppress(Exception):
                await msg.in_progress()


def batch_handler(archiver: Archiver, js: JetStreamContext, parallel: int = 2) -> bus.BatchHandler:
    """Archives a fetched batch, `parallel` recordings at a time; every message of the batch
    has its ack deadline pushed back until the whole batch is done."""
    slots = asyncio.Semaphore(parallel)

    async def one(msg: Msg) -> Exception | None:
        async with slots:
            try:
                await _archive_one(archiver, js, msg)
            except Exception as exc:
                ARCHIVED.labels("failed").inc()
                log.warning("recording_archive_failed", subject=msg.subject, error=repr(exc))
                return exc
        ARCHIVED.labels("archived").inc()
        return None

    async def on_batch(msgs: list[Msg]) -> list[Exception | None]:
        beat = asyncio.create_task(_heartbeat(msgs))
        try:
            return list(await asyncio.gather(*(one(msg) for msg in msgs)))
        finally:
            beat.cancel()

    return on_batch


async def _archive_one(archiver: Archiver, js: JetStreamContext, msg: Msg) -> None:
    event = decode_finished(msg)
    doc = await archiver.archive(event)
    if doc["state"] != "archived":
        return  # an on-demand recording nobody kept: discarded, nothing archived
    archived = recording_pb2.RecordingArchived(
        header=event.header,
        recording_id=doc["_id"],
        object_key=doc["object_key"],
        version_id=doc["version_id"],
        sha256=doc["sha256"],
        retain_until=to_timestamp(doc["retain_until"]),
    )
    archived.header.event_id = f"{doc['_id']}:{subjects.RECORDING_ARCHIVED}"
    await bus.publish_event(
        js,
        subjects.recording_event(doc["tenant_id"], subjects.RECORDING_ARCHIVED),
        archived,
        archived.header.event_id,
    )
