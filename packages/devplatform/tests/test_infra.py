"""The infrastructure components really run and really behave as the platform relies on."""

from __future__ import annotations

import asyncio
import datetime as dt
import mailbox
import os
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from nats.js.api import ConsumerConfig
from pymongo import AsyncMongoClient, ReturnDocument, WriteConcern
from pymongo.errors import DuplicateKeyError
from ringwise_dev.infra import Infra
from ringwise_dev.ports import HOST, INFRA_TEST_PORTS
from ringwise_dev.proc import tcp_open

pytestmark = pytest.mark.integration

# Its own base, so this runs beside the dev platform (20000) and the test platform (22000).
PORTS = INFRA_TEST_PORTS


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def infra(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Infra]:
    instance = Infra(PORTS, tmp_path_factory.mktemp("infra"))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


def s3_client(infra: Infra) -> Any:
    import boto3  # type: ignore[import-untyped]  # noqa: PLC0415
    from botocore.config import Config  # type: ignore[import-untyped]  # noqa: PLC0415

    ep = infra.endpoints
    return boto3.client(
        "s3",
        endpoint_url=ep.s3_endpoint,
        aws_access_key_id=ep.s3_access_key,
        aws_secret_access_key=ep.s3_secret_key,
        region_name=ep.s3_region,
        # As the recording archive will: retry transient 5xx with backoff (SeaweedFS may
        # answer 500 for a few hundred ms while a restarted volume re-registers).
        config=Config(retries={"max_attempts": 8, "mode": "standard"}),
    )


async def test_secret_is_not_in_repr_or_logs(infra: Infra) -> None:
    secret = infra.endpoints.s3_secret_key
    assert secret not in repr(infra.endpoints)
    for log in (infra.data_dir / "logs").iterdir():
        assert secret not in log.read_text(errors="replace"), log


async def test_nats_jetstream_dedup_and_redelivery(infra: Infra) -> None:
    nc = await nats.connect(infra.endpoints.nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="CALLS", subjects=["calls.>"])
        first = await js.publish("calls.ended", b"c1", headers={"Nats-Msg-Id": "call-1"})
        again = await js.publish("calls.ended", b"c1", headers={"Nats-Msg-Id": "call-1"})
        assert not first.duplicate
        assert again.duplicate
        assert again.seq == first.seq

        sub = await js.pull_subscribe(
            "calls.>", durable="billing", config=ConsumerConfig(ack_wait=0.5)
        )
        [msg] = await sub.fetch(1, timeout=5)
        assert msg.data == b"c1"
        # Not acked: after ack_wait the durable consumer hands it out again.
        await asyncio.sleep(0.7)
        [redelivered] = await sub.fetch(1, timeout=5)
        assert redelivered.data == b"c1"
        assert redelivered.metadata.num_delivered == 2
        await redelivered.ack()
    finally:
        await nc.close()


async def test_nats_restart_keeps_jetstream_state(infra: Infra) -> None:
    nc = await nats.connect(infra.endpoints.nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="DURABLE", subjects=["durable.>"])
        await js.publish("durable.x", b"kept")
    finally:
        await nc.close()

    await infra.nats.stop()
    assert not await tcp_open(HOST, PORTS.nats)
    await infra.nats.start_and_wait()

    nc = await nats.connect(infra.endpoints.nats_url)
    try:
        info = await nc.jetstream().stream_info("DURABLE")
        assert info.state.messages == 1
    finally:
        await nc.close()


async def test_redis_set_get(infra: Infra) -> None:
    client = aioredis.Redis.from_url(infra.endpoints.redis_url)
    try:
        await client.set("presence:alice", "ringing", ex=60)
        assert await client.get("presence:alice") == b"ringing"
    finally:
        await client.aclose()


async def test_mongo_unique_index_upsert_find_one_and_update(infra: Infra) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.endpoints.mongo_url)
    try:
        numbers = client["ringwise_test"]["numbers"]
        await numbers.create_index("e164", unique=True)
        await numbers.update_one({"e164": "+15550100"}, {"$set": {"owner": "alice"}}, upsert=True)
        await numbers.update_one({"e164": "+15550100"}, {"$set": {"owner": "bob"}}, upsert=True)
        assert await numbers.count_documents({}) == 1
        with pytest.raises(DuplicateKeyError):
            await numbers.insert_one({"e164": "+15550100"})
        doc = await numbers.find_one_and_update(
            {"e164": "+15550100"},
            {"$inc": {"calls": 1}},
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        assert doc["owner"] == "bob"
        assert doc["calls"] == 1
    finally:
        await client.close()


def _s3_object_lock(infra: Infra) -> None:
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]  # noqa: PLC0415

    s3 = s3_client(infra)
    s3.create_bucket(Bucket="recordings", ObjectLockEnabledForBucket=True)
    assert s3.get_bucket_versioning(Bucket="recordings")["Status"] == "Enabled"
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    put = s3.put_object(
        Bucket="recordings",
        Key="call-1.wav",
        Body=b"RIFF",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )
    version = put["VersionId"]
    retention = s3.get_object_retention(Bucket="recordings", Key="call-1.wav", VersionId=version)
    assert retention["Retention"]["Mode"] == "COMPLIANCE"
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket="recordings", Key="call-1.wav", VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    # COMPLIANCE means not even a governance bypass may delete it.
    with pytest.raises(ClientError):
        s3.delete_object(
            Bucket="recordings",
            Key="call-1.wav",
            VersionId=version,
            BypassGovernanceRetention=True,
        )
    body = s3.get_object(Bucket="recordings", Key="call-1.wav", VersionId=version)["Body"]
    assert body.read() == b"RIFF"
    s3.close()


async def test_s3_object_lock_compliance(infra: Infra) -> None:
    await asyncio.to_thread(_s3_object_lock, infra)


def _send_mail(host: str, port: int) -> None:
    msg = EmailMessage()
    msg["From"] = "voicemail@ringwise.test"
    msg["To"] = "alice@example.test"
    msg["Subject"] = "New voicemail from +15550100"
    msg.set_content("You have a new voicemail.")
    with smtplib.SMTP(host, port, timeout=5) as smtp:
        smtp.send_message(msg)


async def test_smtp_mail_lands_in_maildir(infra: Infra) -> None:
    ep = infra.endpoints
    await asyncio.to_thread(_send_mail, ep.smtp_host, ep.smtp_port)
    subjects = [m["Subject"] for m in mailbox.Maildir(ep.maildir, create=False)]
    assert "New voicemail from +15550100" in subjects


async def test_crashed_components_restart_with_their_data(infra: Infra) -> None:
    # A journaled write ({j: true}) is on disk when acknowledged; a plain w:1 write may still
    # be in the server's log buffer (as with mongod), so a crash could lose it: not asserted.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.endpoints.mongo_url)
    try:
        journaled = client["ringwise_test"].get_collection(
            "numbers", write_concern=WriteConcern(w=1, j=True)
        )
        await journaled.update_one({"e164": "+15550199"}, {"$set": {"owner": "carol"}}, upsert=True)
    finally:
        await client.close()

    # A crash (SIGKILL of the process group), then a restart of just that component.
    infra.mongo.kill()
    infra.s3.kill()
    await asyncio.gather(infra.mongo.start_and_wait(), infra.s3.start_and_wait())

    client = AsyncMongoClient(infra.endpoints.mongo_url)
    try:
        doc = await client["ringwise_test"]["numbers"].find_one({"e164": "+15550199"})
        assert doc is not None
        assert doc["owner"] == "carol"
    finally:
        await client.close()

    def read_recording() -> bytes:
        s3 = s3_client(infra)
        try:
            body: bytes = s3.get_object(Bucket="recordings", Key="call-1.wav")["Body"].read()
        finally:
            s3.close()
        return body

    assert await asyncio.to_thread(read_recording) == b"RIFF"


def _gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_stop_leaves_nothing_running(infra: Infra) -> None:
    # Runs last in this module: stops the shared instance (the fixture's stop is then a no-op).
    pids = [p.pid for p in infra.processes]
    assert all(pid is not None for pid in pids)
    await infra.stop()
    assert not any(p.running for p in infra.processes)
    for pid in pids:
        assert pid is not None
        assert _gone(pid), f"process group {pid} still alive"
    for name, port in infra.listen_ports().items():
        assert not await tcp_open(HOST, port), f"{name} port {port} still open"
    assert Path(infra.data_dir / "s3-identities.json").stat().st_mode & 0o077 == 0
