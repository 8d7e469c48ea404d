"""Archive internals against the real S3 (Object Lock), Mongo and Asterisk: resuming after a crash
at each step, the verifier, and the expiry job with a controllable clock."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from ringwise_dev.platform import LocalPlatform
from ringwise_kit.ari import AriInstances
from ringwise_kit.bus import PermanentError
from ringwise_kit.config import AriSettings
from ringwise_recording.archive.archiver import ArchiveBusy, Archiver
from ringwise_recording.archive.bucket import S3Settings, WormBucket
from ringwise_recording.archive.consumer import AriRecordings
from ringwise_recording.archive.envelope import PlatformKey, WrappingKey
from ringwise_recording.archive.jobs import Expiry, Verifier
from ringwise_recording.recordings.store import RecordingStore

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helpers are beside us
from recording_helpers import (
    RECORDING_DB,
    finished_event,
    put_on_asterisk,
    recordings_dir,
    s3_client,
    wav_bytes,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KEY = PlatformKey("platform-jobs", os.urandom(32))


class Crash(BaseException):
    """Stands for the process dying at that point (not an Exception: nothing catches it)."""


class FixedKeys:
    async def wrapping_key(self, tenant_id: str) -> WrappingKey:
        return KEY


class CrashingBucket(WormBucket):
    """A bucket whose process 'dies' right after one chosen call succeeded."""

    crash_after = ""

    async def complete_upload(self, key: str, upload_id: str, etags: list[str]) -> str:
        version = await super().complete_upload(key, upload_id, etags)
        if self.crash_after == "complete":
            raise Crash
        return version

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: bytes | bytearray
    ) -> str:
        etag = await super().upload_part(key, upload_id, number, body)
        if self.crash_after == "part" and number == 1:
            raise Crash
        return etag


class CrashingSource(AriRecordings):
    crash_after_delete = False

    async def delete(self, name: str, instance: str) -> bool:
        deleted = await super().delete(name, instance)
        if self.crash_after_delete:
            raise Crash
        return deleted


@pytest_asyncio.fixture(loop_scope="session")
async def parts(platform: LocalPlatform) -> AsyncIterator[dict[str, Any]]:
    ep = platform.infra.endpoints
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ep.mongo_url, tz_aware=True)
    store = RecordingStore(mongo, RECORDING_DB)
    s3 = S3Settings(
        ep.s3_endpoint,
        ep.s3_access_key,
        ep.s3_secret_key,
        ep.s3_region,
        platform.recordings_bucket,
    )
    ari = AriInstances(ari_settings(platform))
    yield {"store": store, "s3": s3, "ari": ari, "mongo": mongo}
    await ari.close()
    await mongo.close()


def ari_settings(platform: LocalPlatform, **changes: str) -> AriSettings:
    return AriSettings(
        ari_url=platform.asterisk.ari_url,
        ari_user=platform.asterisk.ari_user,
        ari_password=SecretStr(platform.asterisk.ari_password),
        ari_app="ringwise",
    ).model_copy(update=changes)


def archiver(parts: dict[str, Any], bucket: WormBucket, source: AriRecordings) -> Archiver:
    return Archiver(parts["store"], bucket, source, FixedKeys(), part_bytes=5 * 1024 * 1024)


@pytest.mark.parametrize("crash_point", ["part", "complete", "delete"])
async def test_a_crash_at_any_step_then_a_retry_archives_exactly_once(
    parts: dict[str, Any], platform: LocalPlatform, crash_point: str
) -> None:
    name = f"rec-crash-{crash_point}-{uuid.uuid4().hex[:8]}"
    audio = wav_bytes(800)  # 12.8 MB: three parts
    put_on_asterisk(platform, name, audio)
    event = finished_event(name, tenant_id="crashco")
    crashing = CrashingBucket(parts["s3"])
    crashing.crash_after = crash_point if crash_point != "delete" else ""
    source = CrashingSource(parts["ari"])
    source.crash_after_delete = crash_point == "delete"
    with pytest.raises(Crash):
        await archiver(parts, crashing, source).archive(event)
    crashed = await parts["store"].get(name)
    assert crashed is not None
    expected_state = {"part": "uploading", "complete": "completing", "delete": "verified"}
    assert crashed["state"] == expected_state[crash_point]

    healthy = WormBucket(parts["s3"])
    doc = await archiver(parts, healthy, AriRecordings(parts["ari"])).archive(event)
    assert doc["state"] == "archived"
    s3 = s3_client(platform.infra)
    versions = s3.list_object_versions(Bucket=healthy.name, Prefix=doc["object_key"])["Versions"]
    assert [v["VersionId"] for v in versions] == [doc["version_id"]]
    uploads = s3.list_multipart_uploads(Bucket=healthy.name, Prefix=doc["object_key"])
    assert uploads.get("Uploads", []) == []
    assert not (recordings_dir(platform) / f"{name}.wav").exists()
    s3.close()
    crashing.close()
    healthy.close()


async def test_the_verifier_rereads_objects_and_reports_a_checksum_mismatch(
    parts: dict[str, Any], platform: LocalPlatform
) -> None:
    bucket = WormBucket(parts["s3"])
    docs = []
    for _ in range(2):
        name = f"rec-verify-{uuid.uuid4().hex[:8]}"
        put_on_asterisk(platform, name, wav_bytes(3))
        docs.append(
            await archiver(parts, bucket, AriRecordings(parts["ari"])).archive(
                finished_event(name, tenant_id="verifyco")
            )
        )
    verifier = Verifier(parts["store"], bucket)
    assert await verifier.check(docs[0]) == ""
    # The metadata says another checksum than the bytes the archive holds: reported.
    tampered = dict(docs[1], ciphertext_sha256="0" * 64)
    assert "SHA-256" in await verifier.check(tampered)
    report = await verifier.run(sample=1000)
    assert report.checked >= 2
    assert not set(report.failures) & {d["_id"] for d in docs}
    stored = await parts["store"].get(docs[0]["_id"])
    assert stored["integrity"] == "ok"
    bucket.close()


async def test_expiry_removes_metadata_only_after_retention_and_never_under_legal_hold(
    parts: dict[str, Any], platform: LocalPlatform
) -> None:
    bucket = WormBucket(parts["s3"])
    store: RecordingStore = parts["store"]
    now = datetime.now(UTC).replace(microsecond=0)
    made = []
    for label in ("short", "held", "long"):
        name = f"rec-expiry-{label}-{uuid.uuid4().hex[:6]}"
        put_on_asterisk(platform, name, wav_bytes(1))
        # "short": its 1-day retention ends 4 s from now (the call ended a day ago);
        # the archiver's clock is moved so it does not lengthen the lock.
        ended_ago = timedelta(days=1) - timedelta(seconds=4) if label != "long" else timedelta(0)
        event = finished_event(
            name,
            tenant_id="expiryco",
            retention_days=1,
            started_at=now - ended_ago - timedelta(seconds=30),
        )
        worker = Archiver(
            store,
            bucket,
            AriRecordings(parts["ari"]),
            FixedKeys(),
            part_bytes=5 * 1024 * 1024,
            clock=lambda: now - timedelta(days=1),
        )
        made.append(await worker.archive(event))
    short, held, long = made
    await bucket.set_legal_hold(held["object_key"], held["version_id"], True)
    await store.update(held["_id"], {"legal_hold": True})

    # Before retention ends nothing goes, whatever is asked.
    report = await Expiry(store, bucket, clock=lambda: now).run()
    assert not set(report.removed) & {d["_id"] for d in made}
    # Our clock says two days later, the S3 server's does not yet: the server refuses to
    # delete the still-locked "long" object, so its metadata stays.
    await asyncio.sleep(7)
    report = await Expiry(store, bucket, clock=lambda: now + timedelta(days=2)).run()
    assert short["_id"] in report.removed
    assert long["_id"] in report.refused
    assert held["_id"] not in report.removed and held["_id"] not in report.refused
    assert await store.get(short["_id"]) is None
    assert await store.get(long["_id"]) is not None
    assert await store.get(held["_id"]) is not None
    s3 = s3_client(platform.infra)
    gone = s3.list_object_versions(Bucket=bucket.name, Prefix=short["object_key"])
    assert gone.get("Versions", []) == []
    s3.close()
    bucket.close()


async def test_two_workers_racing_on_one_recording_store_it_once(
    parts: dict[str, Any], platform: LocalPlatform
) -> None:
    name = f"rec-race-{uuid.uuid4().hex[:8]}"
    put_on_asterisk(platform, name, wav_bytes(800))
    event = finished_event(name, tenant_id="raceco")
    bucket = WormBucket(parts["s3"])
    first, second = (archiver(parts, bucket, AriRecordings(parts["ari"])) for _ in range(2))
    outcomes = await asyncio.gather(
        first.archive(event), second.archive(event), return_exceptions=True
    )
    done = [o for o in outcomes if isinstance(o, dict)]
    busy = [o for o in outcomes if isinstance(o, ArchiveBusy)]
    assert len(done) == 1 and len(busy) == 1, outcomes
    # The loser's retry finds the work done.
    again = await second.archive(event)
    assert again["version_id"] == done[0]["version_id"]
    s3 = s3_client(platform.infra)
    versions = s3.list_object_versions(Bucket=bucket.name, Prefix=again["object_key"])["Versions"]
    assert len(versions) == 1
    s3.close()
    bucket.close()


async def test_the_recording_is_fetched_from_the_asterisk_the_event_names(
    parts: dict[str, Any], platform: LocalPlatform
) -> None:
    """Several Asterisks (Kubernetes): the file is taken from, and deleted on, the instance
    the event names, through the URL template; the default URL is not used. Here the
    instance "localhost" is the platform's Asterisk and the default URL leads nowhere."""
    ari_port = platform.asterisk.ari_url.rsplit(":", 1)[1]
    by_template = AriInstances(
        ari_settings(
            platform,
            ari_url="http://127.0.0.1:9",  # discard port: nothing answers there
            ari_url_template=f"http://{{instance}}:{ari_port}",
        )
    )
    bucket = WormBucket(parts["s3"])
    name = f"rec-instance-{uuid.uuid4().hex[:8]}"
    put_on_asterisk(platform, name, wav_bytes(2))
    event = finished_event(name, tenant_id="podsco")
    event.asterisk_instance = "localhost"
    doc = await archiver(parts, bucket, AriRecordings(by_template)).archive(event)
    assert doc["state"] == "archived" and doc["asterisk_instance"] == "localhost"
    assert not (recordings_dir(platform) / f"{name}.wav").exists()

    # A name that cannot be a pod (it would steer the fetch to any host) is refused for good.
    name = f"rec-bad-instance-{uuid.uuid4().hex[:8]}"
    put_on_asterisk(platform, name, wav_bytes(1))
    event = finished_event(name, tenant_id="podsco")
    event.asterisk_instance = "evil.example.com:80/x"
    with pytest.raises(PermanentError, match="not an Asterisk instance name"):
        await archiver(parts, bucket, AriRecordings(by_template)).archive(event)
    assert (recordings_dir(platform) / f"{name}.wav").exists()
    assert await parts["store"].get(name) is None
    await by_template.close()
    bucket.close()
