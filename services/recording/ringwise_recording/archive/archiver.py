"""Takes one finished recording from Asterisk into the WORM archive, exactly once.

Stream from ARI -> SHA-256 + chunked AES-256-GCM (envelope.py) -> S3 multipart upload, with a
bounded number of parts in flight (memory stays flat in the file's size) -> verify the stored
version (size, multipart ETag computed locally, COMPLIANCE lock, retain-until, SSE) -> only
then delete the file from Asterisk.

Every step is recorded in the recording's Mongo document before the next one starts, so a
redelivered event (after SIGKILL, a lost ack, an S3 outage) resumes instead of starting over:
an object version is never created twice, and the Asterisk file is never deleted before its
archived copy is verified (store.py lists the states).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ringwise.events.v1 import recording_pb2
from ringwise_kit.ari import is_instance_name
from ringwise_kit.bus import PermanentError
from ringwise_kit.events import from_timestamp
from ringwise_kit.logs import bind_call, get_logger

from ringwise_recording.archive.bucket import LOCK_MODE, SSE, WormBucket, error_code, multipart_etag
from ringwise_recording.archive.envelope import Sealer, WrappingKey
from ringwise_recording.recordings import access
from ringwise_recording.recordings import store as states
from ringwise_recording.recordings.store import Doc, RecordingStore

log = get_logger(__name__)

MIN_PART_BYTES = 5 * 1024 * 1024  # S3's minimum for every part but the last
Clock = Callable[[], datetime]
MIN_LOCK = timedelta(days=1)


class RecordingSource(Protocol):
    """Where finished recordings wait: the stored recordings of the Asterisk `instance`
    ("" = the one Asterisk), over ARI."""

    def stream(self, name: str, instance: str) -> AsyncIterator[bytes]: ...

    async def delete(self, name: str, instance: str) -> bool: ...


def _held_at(doc: Doc) -> tuple[str, str]:
    """The stored recording's name and the Asterisk holding it (documents written before the
    instance was recorded have none: the one Asterisk)."""
    return doc["asterisk_name"], doc.get("asterisk_instance", "")


class SourceMissing(Exception):
    """The recording is not (or no longer) on Asterisk."""


class KeyResolver(Protocol):
    async def wrapping_key(self, tenant_id: str) -> WrappingKey: ...


class VerificationFailed(Exception):
    pass


class ArchiveBusy(Exception):
    """Another worker holds this recording's lease; the event is retried later."""


def object_key(tenant_id: str, started_at: datetime, recording_id: str) -> str:
    return f"{tenant_id}/{started_at:%Y/%m/%d}/{recording_id}.rwrec"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class PartCutter:
    """Seals plaintext into upload parts, hashing the whole ciphertext on the way.

    A part is handed over as soon as it holds part_bytes or more (S3 parts need not be all the
    same size), so ciphertext is copied once, into its part, and never re-sliced."""

    def __init__(self, sealer: Sealer, part_bytes: int) -> None:
        self._sealer = sealer
        self._part_bytes = part_bytes
        self._part = bytearray()
        self.cipher_sha = hashlib.sha256()
        self.cipher_size = 0

    def _take(self, pieces: list[bytes], final: bool) -> list[bytearray]:
        for piece in pieces:
            self.cipher_sha.update(piece)
            self.cipher_size += len(piece)
            self._part += piece
        # The final part is never empty (the envelope ends with its trailer).
        if len(self._part) >= self._part_bytes or (final and self._part):
            part, self._part = self._part, bytearray()
            return [part]
        return []

    def feed(self, data: bytes) -> list[bytearray]:
        return self._take(self._sealer.feed_pieces(data), final=False)

    def finish(self) -> list[bytearray]:
        return self._take([self._sealer.finish()], final=True)


class Archiver:
    def __init__(
        self,
        store: RecordingStore,
        bucket: WormBucket,
        source: RecordingSource,
        keys: KeyResolver,
        *,
        part_bytes: int = 8 * 1024 * 1024,
        parts_in_flight: int = 2,
        default_retention_days: int = 365,
        clock: Clock = utc_now,
        lease: timedelta = timedelta(seconds=30),
    ) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"parts must be at least {MIN_PART_BYTES} bytes")
        self._store = store
        self._bucket = bucket
        self._source = source
        self._keys = keys
        self._part_bytes = part_bytes
        self._parts_in_flight = max(1, parts_in_flight)
        self._default_retention_days = default_retention_days
        self._clock = clock
        self._lease = lease
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def new_document(self, event: recording_pb2.RecordingFinished) -> Doc:
        header = event.header
        started = from_timestamp(event.started_at) or from_timestamp(header.occurred_at)
        ended = from_timestamp(event.ended_at) or started
        if not event.recording_id or not event.asterisk_name or started is None or ended is None:
            raise PermanentError("RecordingFinished lacks recording_id, asterisk_name or times")
        if not is_instance_name(event.asterisk_instance):
            # It would steer the download to another host: refused before anything is stored.
            raise PermanentError(
                f"{event.asterisk_instance!r} is not an Asterisk instance name (a DNS label)"
            )
        days = event.retention_days or self._default_retention_days
        # Whole seconds: S3 keeps retain-until at second precision.
        retain_until = _seconds(ended + timedelta(days=days)) + timedelta(seconds=1)
        # An event archived after its retention already ran out (a long outage, an old SMS)
        # is still stored locked: S3 refuses a retain-until in the past.
        retain_until = max(retain_until, _seconds(self._clock()) + MIN_LOCK)
        parties = [p for p in (event.from_number, event.to_number) if p]
        return {
            "_id": event.recording_id,
            "tenant_id": header.tenant_id,
            "call_id": header.call_id,
            "source": event.source or "call",
            "mode": recording_pb2.RecordingMode.Name(event.mode),
            "layout": recording_pb2.ChannelLayout.Name(event.layout),
            "party": event.party,
            "user_id": event.user_id,
            "team_id": event.team_id,
            "from_number": event.from_number,
            "to_number": event.to_number,
            "parties": parties,
            "started_at": started,
            "ended_at": ended,
            "duration_ms": int((ended - started).total_seconds() * 1000),
            "format": event.format or "wav",
            "asterisk_name": event.asterisk_name,
            "asterisk_instance": event.asterisk_instance,
            "retention_days": days,
            "retain_until": retain_until,
            "bucket": self._bucket.name,
            "object_key": object_key(header.tenant_id or "_", started, event.recording_id),
            "legal_hold": False,
            "announcement": event.announcement,
            "keep_requested": event.keep_requested,
            "state": states.UPLOADING,
            "created_at": self._clock(),
        }

    async def kept(self, event: recording_pb2.RecordingFinished) -> bool:
        """Compliant recordings are always kept; on-demand ones only when asked during the
        call (feature code, or the keep operation by the call's user or a supervisor/officer)."""
        if event.mode != recording_pb2.RECORDING_MODE_ON_DEMAND or event.keep_requested:
            return True
        header = event.header
        for ask in await self._store.keep_requests_of(header.tenant_id, header.call_id):
            if ask.get("on_behalf") or ask.get("requested_by") == event.user_id:
                return True
        return False

    async def _discard(self, event: recording_pb2.RecordingFinished) -> Doc:
        doc = self.new_document(event) | {"state": states.DISCARDED}
        if not await self._store.create(doc):
            # Someone else decided first (a keep request landed meanwhile): theirs stands.
            existing = await self._store.get(event.recording_id)
            if existing is not None and existing["state"] != states.DISCARDED:
                return await self.archive(event)
        await self._source.delete(event.asterisk_name, event.asterisk_instance)
        log.info("recording_discarded", recording_id=event.recording_id, reason="not kept")
        return doc

    async def archive(self, event: recording_pb2.RecordingFinished) -> Doc:
        """Archive one recording (idempotent on its id); returns its final document."""
        doc = await self._store.get(event.recording_id)
        if doc is None and not await self.kept(event):
            return await self._discard(event)
        if doc is not None and doc["state"] == states.DISCARDED:
            await self._source.delete(*_held_at(doc))
            return doc
        if doc is None:
            fresh = self.new_document(event)
            if not fresh["team_id"]:
                # Routing does not know teams yet: the tenant's settings say who is in which.
                settings = await self._store.tenant_settings(fresh["tenant_id"])
                fresh["team_id"] = access.team_of(settings, fresh["user_id"])
            if not await self._store.create(fresh):
                doc = await self._store.get(event.recording_id)
            doc = doc or fresh
        if doc["state"] == states.ARCHIVED:
            with bind_call(doc["call_id"], tenant_id=doc["tenant_id"] or None):
                return await self._advance(doc)
        # One worker at a time per recording (another instance, or a redelivery racing a slow
        # upload): a lease on the document, renewed while the work runs.
        if not await self._store.claim(doc["_id"], self._owner, self._clock(), self._lease):
            raise ArchiveBusy(f"recording {doc['_id']} is being archived by another worker")
        renew = asyncio.create_task(self._keep_lease(doc["_id"]))
        try:
            with bind_call(doc["call_id"], tenant_id=doc["tenant_id"] or None):
                return await self._advance(doc)
        finally:
            renew.cancel()
            await self._store.release(doc["_id"], self._owner)

    async def _keep_lease(self, recording_id: str) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            await self._store.claim(recording_id, self._owner, self._clock(), self._lease)

    async def _advance(self, doc: Doc) -> Doc:
        started_in = doc["state"]
        if doc["state"] == states.UPLOADING:
            doc = await self._upload(doc)
        if doc["state"] == states.COMPLETING:
            doc = await self._complete(doc)
            if doc["state"] == states.UPLOADING:  # the open upload was lost: start over
                doc = await self._upload(doc)
                doc = await self._complete(doc)
        if doc["state"] == states.UPLOADED:
            doc = await self._verify(doc)
        if doc["state"] == states.VERIFIED:
            await self._source.delete(*_held_at(doc))
            doc = await self._set(
                doc,
                state=states.ARCHIVED,
                archived_at=self._clock(),
                lease_owner=None,  # done: nobody needs to hold it any more
                lease_until=None,
            )
            log.info(
                "recording_archived",
                recording_id=doc["_id"],
                bytes=doc["size"],
                object_key=doc["object_key"],
                version_id=doc["version_id"],
                resumed_from=started_in if started_in != states.UPLOADING else None,
            )
        elif doc["state"] == states.ARCHIVED:
            # A redelivery after the archive finished: make sure Asterisk's copy is gone.
            await self._source.delete(*_held_at(doc))
        return doc

    async def _set(self, doc: Doc, **changes: Any) -> Doc:
        updated = await self._store.update(doc["_id"], changes)
        if updated is None:
            raise RuntimeError(f"recording {doc['_id']} vanished from the store")
        return updated

    async def _upload(self, doc: Doc) -> Doc:
        key = doc["object_key"]
        # Leftovers of an attempt that died before recording its upload id, or mid-parts.
        await self._bucket.abort_uploads(key)
        if await self._bucket.versions(key):
            # Only _complete creates a version, and only after COMPLETING is recorded.
            raise PermanentError(f"{key} has a version the archive did not record")
        wrapping = await self._keys.wrapping_key(doc["tenant_id"])
        sealer = Sealer(wrapping, doc["_id"])
        upload_id = await self._bucket.start_upload(
            key,
            doc["retain_until"],
            {"recording-id": doc["_id"], "tenant-id": doc["tenant_id"], "key-id": sealer.key_id},
        )
        doc = await self._set(doc, upload_id=upload_id, key_mode=sealer.mode, key_id=sealer.key_id)
        cutter = PartCutter(sealer, self._part_bytes)
        uploads: list[asyncio.Task[str]] = []
        in_flight = asyncio.Semaphore(self._parts_in_flight)

        async def send(parts: list[bytearray]) -> None:
            for body in parts:
                number = len(uploads) + 1
                await in_flight.acquire()

                async def upload(body: bytearray = body, number: int = number) -> str:
                    try:
                        return await self._bucket.upload_part(key, upload_id, number, body)
                    finally:
                        in_flight.release()

                uploads.append(asyncio.create_task(upload()))

        try:
            try:
                async for data in self._source.stream(*_held_at(doc)):
                    # Sealing and hashing release the GIL: off the loop, they overlap with
                    # the download from Asterisk and the part uploads.
                    await send(await asyncio.to_thread(cutter.feed, data))
            except SourceMissing:
                await self._bucket.abort_uploads(key)
                raise PermanentError(
                    f"recording {doc['asterisk_name']} is not on Asterisk and not archived"
                ) from None
            await send(await asyncio.to_thread(cutter.finish))
            etags = list(await asyncio.gather(*uploads))
        except BaseException:
            for task in uploads:
                task.cancel()
            raise
        return await self._set(
            doc,
            state=states.COMPLETING,
            part_etags=etags,
            # The object must consist of exactly the parts the server acknowledged.
            expected_etag=multipart_etag([bytes.fromhex(e.strip('"')) for e in etags]),
            sha256=sealer.plain_sha256,
            size=sealer.plain_length,
            ciphertext_sha256=cutter.cipher_sha.hexdigest(),
            ciphertext_size=cutter.cipher_size,
        )

    async def _complete(self, doc: Doc) -> Doc:
        key = doc["object_key"]
        for version in await self._bucket.versions(key):
            if version.get("ETag") == doc["expected_etag"]:
                # complete ran before a crash: adopt that version, never make a second.
                return await self._set(doc, state=states.UPLOADED, version_id=version["VersionId"])
        try:
            version_id = await self._bucket.complete_upload(
                key, doc["upload_id"], doc["part_etags"]
            )
        except Exception as exc:
            if error_code(exc) != "NoSuchUpload":
                raise
            log.warning("recording_upload_lost", recording_id=doc["_id"])
            return await self._set(doc, state=states.UPLOADING)
        return await self._set(doc, state=states.UPLOADED, version_id=version_id)

    async def _verify(self, doc: Doc) -> Doc:
        stored = await self._bucket.state(doc["object_key"], doc["version_id"])
        problems = []
        if stored.size != doc["ciphertext_size"]:
            problems.append(f"size {stored.size} != {doc['ciphertext_size']}")
        if stored.etag != doc["expected_etag"]:
            problems.append(f"etag {stored.etag} != {doc['expected_etag']}")
        if stored.lock_mode != LOCK_MODE:
            problems.append(f"lock mode {stored.lock_mode or 'none'}")
        until = stored.retain_until
        if until is None or until < doc["retain_until"].replace(tzinfo=UTC) - timedelta(seconds=1):
            problems.append(f"retain-until {until} before {doc['retain_until']}")
        if stored.sse != SSE:
            problems.append(f"server-side encryption {stored.sse or 'none'}")
        if problems:
            raise VerificationFailed(f"{doc['object_key']}@{doc['version_id']}: {problems}")
        return await self._set(doc, state=states.VERIFIED, verified_at=self._clock())
