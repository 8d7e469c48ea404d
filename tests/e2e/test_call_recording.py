"""Call recording end to end: real Asterisk, sipp caller and phones, routing, recording service,
S3 with Object Lock. Compliant calls are announced, recorded and archived locked; on-demand
calls are kept only when asked during the call."""

from __future__ import annotations

import array
import asyncio
import hashlib
import io
import json
import os
import sys
import uuid
import wave
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from pymongo import AsyncMongoClient
from ringwise.api.v1 import api_pb2
from ringwise.events.v1 import call_pb2
from ringwise_dev.fixture import ALICE, BENCH, DAVE, TENANT
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import PhoneKind
from ringwise_dev.testing import StartPhone, new_caller, stream_events, wait_cdrs
from ringwise_kit import bus
from ringwise_kit.api import ApiCall, call_service
from ringwise_recording.archive.envelope import open_stream

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helpers are beside us
from recording_helpers import platform_key, s3_client, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

Mongo = AsyncMongoClient[dict[str, Any]]
COMPLIANT_DAYS = 2555  # seven years


@pytest_asyncio.fixture(loop_scope="session")
async def nc(platform: LocalPlatform) -> AsyncIterator[NatsClient]:
    client = await bus.connect(platform.infra.endpoints.nats_url, "e2e-recording")
    yield client
    await client.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(platform: LocalPlatform) -> AsyncIterator[Mongo]:
    client: Mongo = AsyncMongoClient(platform.infra.endpoints.mongo_url, tz_aware=True)
    yield client
    await client.close()


async def api(
    nc: NatsClient, operation: str, who: api_pb2.Principal, body: Any = None, **params: str
) -> tuple[int, Any]:
    reply = await call_service(
        nc,
        "recording",
        ApiCall(
            operation=operation,
            principal=who,
            path_params=params,
            body=json.dumps(body).encode() if body is not None else b"",
            request_id=uuid.uuid4().hex,
        ),
    )
    return reply.status, json.loads(reply.body) if reply.body else None


@pytest_asyncio.fixture(loop_scope="session")
async def policies(nc: NatsClient) -> None:
    """Alice's calls are compliant (seven years, mixed), Dave's compliant with one track per
    party, the bench user's on demand."""
    admin = api_pb2.Principal(subject_id="admin", tenant_id=TENANT, role=api_pb2.ROLE_TENANT_ADMIN)
    status, body = await api(
        nc,
        "putRecordingSettings",
        admin,
        {
            "users": {
                ALICE.user_id: {
                    "policy": {
                        "mode": "compliant",
                        "retention_days": COMPLIANT_DAYS,
                        "announcement": "conf-now-recording",
                    }
                },
                BENCH.user_id: {"policy": {"mode": "on_demand", "retention_days": 365}},
                # A sound Asterisk does not have: the default announcement is played instead.
                DAVE.user_id: {
                    "policy": {
                        "mode": "compliant",
                        "retention_days": 365,
                        "layout": "dual",
                        "announcement": "no-such-sound",
                    }
                },
            }
        },
        tenant_id=TENANT,
    )
    assert status == 200, body


async def call_id_of(platform: LocalPlatform, caller: str, timeout_s: float = 5.0) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        for event in await stream_events(platform):
            if isinstance(event, call_pb2.CallStarted) and event.from_number == caller:
                return event.header.call_id
        await asyncio.sleep(0.2)
    raise AssertionError(f"no call from {caller}")


async def test_a_compliant_call_is_announced_recorded_and_archived_locked_within_10_s(
    platform: LocalPlatform, start_phone: StartPhone, nc: NatsClient, mongo: Mongo, policies: None
) -> None:
    await start_phone(PhoneKind.ANSWER, ALICE)
    caller = new_caller()
    # The caller talks (G.711 audio) through the call.
    result = await platform.sipp.call(
        ALICE.number,
        caller=caller,
        hold_ms=6000,
        scenario="pstn_caller_talking.xml",
        extra_args=["-mp", str(platform.ports.base + 700)],
    )
    assert result.final_codes() == [200]
    hung_up = asyncio.get_running_loop().time()
    [cdr] = await wait_cdrs(platform, caller)
    doc = await wait_state(mongo, f"rw-{cdr['call_id']}", "archived", timeout_s=10)
    assert asyncio.get_running_loop().time() - hung_up <= 10
    assert doc["announcement"] == "sound:conf-now-recording"  # played before recording
    # Routing names its Asterisk in the event and the archive fetched the file there: none
    # locally; RINGWISE_ASTERISK_INSTANCE=localhost and RINGWISE_ARI_URL_TEMPLATE=
    # http://{instance}:<ARI port> in the environment take the Kubernetes path.
    assert doc["asterisk_instance"] == os.environ.get("RINGWISE_ASTERISK_INSTANCE", "")
    assert (doc["mode"], doc["user_id"], doc["from_number"]) == (
        "RECORDING_MODE_COMPLIANT",
        ALICE.user_id,
        caller,
    )
    ended = datetime.fromisoformat(cdr["ended_at"])
    expected_until = ended.replace(microsecond=0) + timedelta(days=COMPLIANT_DAYS, seconds=1)
    assert doc["retain_until"] == expected_until

    s3 = s3_client(platform.infra)
    bucket = platform.recordings_bucket
    head = s3.head_object(Bucket=bucket, Key=doc["object_key"], VersionId=doc["version_id"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == expected_until
    body = s3.get_object(Bucket=bucket, Key=doc["object_key"], VersionId=doc["version_id"])
    ciphertext = body["Body"].read()
    s3.close()
    assert hashlib.sha256(ciphertext).hexdigest() == doc["ciphertext_sha256"]

    async def once() -> AsyncIterator[bytes]:
        yield ciphertext

    audio = b"".join([c async for c in open_stream(once(), platform_key(platform))])
    assert hashlib.sha256(audio).hexdigest() == doc["sha256"]  # the checksum matches
    with wave.open(io.BytesIO(audio)) as recorded:
        seconds = recorded.getnframes() / recorded.getframerate()
        samples = array.array("h", recorded.readframes(recorded.getnframes()))
    # The caller's voice is in it (not silence).
    assert max(abs(s) for s in samples) > 1000
    # The caller stayed 6 s after the answer; the announcement took the first ~2 of them.
    assert 2.0 < seconds < 6.5


async def test_on_demand_calls_are_kept_only_when_asked_during_the_call(
    platform: LocalPlatform, start_phone: StartPhone, nc: NatsClient, mongo: Mongo, policies: None
) -> None:
    await start_phone(PhoneKind.ANSWER, BENCH)
    bench_user = api_pb2.Principal(
        subject_id=BENCH.user_id, tenant_id=TENANT, role=api_pb2.ROLE_USER
    )

    # Kept: the user asks while the call is up.
    kept_caller = new_caller()
    call = asyncio.create_task(platform.sipp.call(BENCH.number, caller=kept_caller, hold_ms=5000))
    call_id = await call_id_of(platform, kept_caller)
    await asyncio.sleep(1.5)  # answered and recording by now
    status, body = await api(
        nc,
        "keepCallRecording",
        bench_user,
        {"reason": "order confirmation"},
        tenant_id=TENANT,
        call_id=call_id,
    )
    assert status == 202, body
    assert (await call).final_codes() == [200]
    kept = await wait_state(mongo, f"rw-{call_id}", "archived", timeout_s=10)
    assert kept["mode"] == "RECORDING_MODE_ON_DEMAND"
    assert kept["announcement"] == ""  # on-demand recordings are not announced
    # Recorded from the start of the conversation, not from the moment of the keep request.
    [cdr] = await wait_cdrs(platform, kept_caller)
    answered = datetime.fromisoformat(cdr["answered_at"])
    assert abs((kept["started_at"] - answered).total_seconds()) < 1

    # Discarded: nobody asks.
    dropped_caller = new_caller()
    result = await platform.sipp.call(BENCH.number, caller=dropped_caller, hold_ms=2000)
    assert result.final_codes() == [200]
    [cdr] = await wait_cdrs(platform, dropped_caller)
    name = f"rw-{cdr['call_id']}"
    dropped = await wait_state(mongo, name, "discarded", timeout_s=10)
    assert "version_id" not in dropped
    s3 = s3_client(platform.infra)
    listing = s3.list_object_versions(
        Bucket=platform.recordings_bucket, Prefix=dropped["object_key"]
    )
    s3.close()
    assert listing.get("Versions", []) == []
    assert not (platform.asterisk.host_dir / "spool" / "recording" / f"{name}.wav").exists()
    # Too late to keep it now.
    status, _ = await api(
        nc, "keepCallRecording", bench_user, tenant_id=TENANT, call_id=cdr["call_id"]
    )
    assert status == 409


async def test_a_dual_channel_policy_records_each_party_on_its_own_track(
    platform: LocalPlatform, start_phone: StartPhone, nc: NatsClient, mongo: Mongo, policies: None
) -> None:
    await start_phone(PhoneKind.ANSWER, DAVE)
    caller = new_caller()
    result = await platform.sipp.call(DAVE.number, caller=caller, hold_ms=4000)
    assert result.final_codes() == [200]
    [cdr] = await wait_cdrs(platform, caller)
    tracks = {}
    for party in ("caller", "callee"):
        doc = await wait_state(mongo, f"rw-{cdr['call_id']}-{party}", "archived", timeout_s=10)
        assert (doc["layout"], doc["party"], doc["call_id"]) == (
            "CHANNEL_LAYOUT_DUAL",
            party,
            cdr["call_id"],
        )
        assert doc["announcement"] == "sound:conf-now-recording"  # the fallback was heard
        tracks[party] = doc
    assert tracks["caller"]["object_key"] != tracks["callee"]["object_key"]
    # No mixed track besides the two.
    assert (
        await mongo["ringwise_recording"].recordings.find_one({"_id": f"rw-{cdr['call_id']}"})
        is None
    )


async def test_the_user_keeps_an_on_demand_recording_with_the_feature_code(
    platform: LocalPlatform, start_phone: StartPhone, nc: NatsClient, mongo: Mongo, policies: None
) -> None:
    # The bench user's desk phone answers and dials *9 a second into the call.
    await start_phone(PhoneKind.KEEP_RECORDING, BENCH)
    caller = new_caller()
    result = await platform.sipp.call(BENCH.number, caller=caller, hold_ms=4000)
    assert result.final_codes() == [200]
    [cdr] = await wait_cdrs(platform, caller)
    kept = await wait_state(mongo, f"rw-{cdr['call_id']}", "archived", timeout_s=10)
    assert (kept["mode"], kept["keep_requested"]) == ("RECORDING_MODE_ON_DEMAND", True)
