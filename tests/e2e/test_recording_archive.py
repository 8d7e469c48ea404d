"""The archive against real Asterisk (ARI stored recordings), S3 with Object Lock, NATS, Mongo.

A finished recording is put where Asterisk leaves it (its spool), the RecordingFinished event is
published, and the recording service process archives it.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nats.aio.client import Client as NatsClient
from pymongo import AsyncMongoClient
from ringwise_dev.platform import LocalPlatform
from ringwise_kit import bus
from ringwise_recording.archive.envelope import EnvelopeError, PlatformKey, fingerprint, open_stream

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helpers are beside us
from recording_helpers import (
    RECORDING_DB,
    finished_event,
    platform_key,
    publish_finished,
    put_on_asterisk,
    recordings_dir,
    s3_client,
    wait_state,
    wav_bytes,
    write_big_wav,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

Mongo = AsyncMongoClient[dict[str, Any]]


@pytest_asyncio.fixture(loop_scope="session")
async def nc(platform: LocalPlatform) -> AsyncIterator[NatsClient]:
    client = await bus.connect(platform.infra.endpoints.nats_url, "recording-tests")
    yield client
    await client.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(platform: LocalPlatform) -> AsyncIterator[Mongo]:
    client: Mongo = AsyncMongoClient(platform.infra.endpoints.mongo_url, tz_aware=True)
    yield client
    await client.close()


async def s3_stream(s3: Any, bucket: str, key: str, version_id: str) -> AsyncIterator[bytes]:
    body = (await asyncio.to_thread(s3.get_object, Bucket=bucket, Key=key, VersionId=version_id))[
        "Body"
    ]
    while chunk := await asyncio.to_thread(body.read, 1 << 20):
        yield chunk


async def decrypted_sha256(
    s3: Any, bucket: str, doc: dict[str, Any], key: PlatformKey | rsa.RSAPrivateKey
) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    stream = s3_stream(s3, bucket, doc["object_key"], doc["version_id"])
    async for chunk in open_stream(stream, key):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


async def ari_has(platform: LocalPlatform, name: str) -> bool:
    url = f"{platform.asterisk.ari_url}/ari/recordings/stored/{name}"
    async with (
        aiohttp.ClientSession(headers=platform.asterisk.ari_auth_headers()) as session,
        session.get(url) as resp,
    ):
        assert resp.status in (200, 404), await resp.text()
        return resp.status == 200


async def test_a_finished_recording_is_archived_encrypted_locked_and_removed_from_asterisk(
    platform: LocalPlatform, nc: NatsClient, mongo: Mongo
) -> None:
    name = "rec-basic-" + datetime.now(UTC).strftime("%H%M%S%f")
    # 20 MB: three multipart parts of 8 MB.
    audio = wav_bytes(1250)
    put_on_asterisk(platform, name, audio)
    assert await ari_has(platform, name)
    event = finished_event(name, retention_days=7)
    await publish_finished(nc, event)

    doc = await wait_state(mongo, name, "archived")
    assert doc["sha256"] == hashlib.sha256(audio).hexdigest()
    assert doc["size"] == len(audio)
    assert doc["key_mode"] == "platform"
    ended = event.ended_at.ToDatetime(tzinfo=UTC)
    assert doc["retain_until"] == ended + timedelta(days=7, seconds=1)
    assert not await ari_has(platform, name)  # deleted from Asterisk only after verification

    s3 = s3_client(platform.infra)
    bucket = platform.recordings_bucket
    versions = s3.list_object_versions(Bucket=bucket, Prefix=doc["object_key"])["Versions"]
    assert [v["VersionId"] for v in versions] == [doc["version_id"]]
    head = s3.head_object(Bucket=bucket, Key=doc["object_key"], VersionId=doc["version_id"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == doc["retain_until"]
    assert head["ServerSideEncryption"] == "AES256"
    # The stored bytes are ciphertext; they decrypt to exactly the audio Asterisk had.
    stored = s3.get_object(Bucket=bucket, Key=doc["object_key"], VersionId=doc["version_id"])
    ciphertext = stored["Body"].read()
    assert audio[1000:1064] not in ciphertext
    assert hashlib.sha256(ciphertext).hexdigest() == doc["ciphertext_sha256"]
    assert await decrypted_sha256(s3, bucket, doc, platform_key(platform)) == (
        doc["sha256"],
        len(audio),
    )

    # The same event again (a redelivery, published past JetStream's de-duplication): no
    # second version, nothing changes.
    await publish_finished(nc, event, msg_id=f"{name}:again")
    await asyncio.sleep(3)
    again = await mongo[RECORDING_DB].recordings.find_one({"_id": name})
    assert again == doc
    versions = s3.list_object_versions(Bucket=bucket, Prefix=doc["object_key"])["Versions"]
    assert len(versions) == 1

    # WORM, straight against the S3 server: the locked version can be neither deleted,
    # nor have its retention shortened; an "overwrite" is only a new version beside it.
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=bucket, Key=doc["object_key"], VersionId=doc["version_id"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        s3.delete_object(
            Bucket=bucket,
            Key=doc["object_key"],
            VersionId=doc["version_id"],
            BypassGovernanceRetention=True,
        )
    with pytest.raises(ClientError):
        s3.put_object_retention(
            Bucket=bucket,
            Key=doc["object_key"],
            VersionId=doc["version_id"],
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": datetime.now(UTC)},
        )
    s3.put_object(Bucket=bucket, Key=doc["object_key"], Body=b"overwritten")
    kept = s3.get_object(Bucket=bucket, Key=doc["object_key"], VersionId=doc["version_id"])
    assert hashlib.sha256(kept["Body"].read()).hexdigest() == doc["ciphertext_sha256"]
    s3.close()


async def test_customer_key_recordings_open_only_with_the_tenants_private_key(
    platform: LocalPlatform, nc: NatsClient, mongo: Mongo
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    await mongo[RECORDING_DB].tenant_settings.update_one(
        {"_id": "globex"},
        {
            "$set": {
                "encryption": {
                    "mode": "customer",
                    "key_id": fingerprint(public_pem),
                    "public_key_pem": public_pem.decode(),
                }
            }
        },
        upsert=True,
    )
    name = "rec-customer-" + datetime.now(UTC).strftime("%H%M%S%f")
    audio = wav_bytes(10)
    put_on_asterisk(platform, name, audio)
    await publish_finished(nc, finished_event(name, tenant_id="globex"))
    doc = await wait_state(mongo, name, "archived")
    assert (doc["key_mode"], doc["key_id"]) == ("customer", fingerprint(public_pem))
    s3 = s3_client(platform.infra)
    bucket = platform.recordings_bucket
    assert await decrypted_sha256(s3, bucket, doc, private) == (doc["sha256"], len(audio))
    with pytest.raises(EnvelopeError):
        await decrypted_sha256(s3, bucket, doc, platform_key(platform))
    s3.close()


async def test_recording_service_killed_mid_upload_loses_nothing_and_stores_nothing_twice(
    platform: LocalPlatform, nc: NatsClient, mongo: Mongo
) -> None:
    name = "rec-sigkill-" + datetime.now(UTC).strftime("%H%M%S%f")
    source = recordings_dir(platform) / f"{name}.wav"
    await asyncio.to_thread(write_big_wav, source, 120 * 1024 * 1024)
    digest = hashlib.sha256()
    with source.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    expected_sha = digest.hexdigest()
    expected_size = source.stat().st_size
    await publish_finished(nc, finished_event(name))

    s3 = s3_client(platform.infra)
    bucket = platform.recordings_bucket
    # Wait until the upload is under way (its id recorded, at least two parts stored)...
    recordings = mongo[RECORDING_DB].recordings
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        doc = await recordings.find_one({"_id": name})
        if doc and doc.get("upload_id"):
            parts = s3.list_parts(Bucket=bucket, Key=doc["object_key"], UploadId=doc["upload_id"])
            if len(parts.get("Parts", [])) >= 2:
                break
        assert asyncio.get_running_loop().time() < deadline, "the upload never started"
        await asyncio.sleep(0.05)
    # ... then crash the service.
    service = platform.services["recording"]
    service.kill()
    assert doc["state"] == "uploading"
    assert source.exists()
    await service.start_and_wait()

    doc = await wait_state(mongo, name, "archived", timeout_s=120)
    assert doc["sha256"] == expected_sha
    versions = s3.list_object_versions(Bucket=bucket, Prefix=doc["object_key"])["Versions"]
    assert [v["VersionId"] for v in versions] == [doc["version_id"]]  # stored once
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=doc["object_key"])
    assert uploads.get("Uploads", []) == []  # the interrupted upload was aborted
    assert not source.exists()  # no orphan left on Asterisk
    assert not await ari_has(platform, name)
    assert await decrypted_sha256(s3, bucket, doc, platform_key(platform)) == (
        expected_sha,
        expected_size,
    )
    s3.close()
