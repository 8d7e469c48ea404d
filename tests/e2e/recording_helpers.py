"""Shared pieces of the recording service's tests: S3 access, WAV files on Asterisk, events."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import uuid
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from nats.aio.client import Client as NatsClient
from pymongo import AsyncMongoClient
from ringwise.events.v1 import call_pb2, recording_pb2
from ringwise_dev.infra import Infra
from ringwise_dev.platform import LocalPlatform
from ringwise_kit import bus, subjects
from ringwise_kit.events import to_timestamp
from ringwise_recording.archive.envelope import PlatformKey

RECORDING_DB = "ringwise_recording"


def s3_client(infra: Infra) -> Any:
    ep = infra.endpoints
    return boto3.client(
        "s3",
        endpoint_url=ep.s3_endpoint,
        aws_access_key_id=ep.s3_access_key,
        aws_secret_access_key=ep.s3_secret_key,
        region_name=ep.s3_region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    """A real 16-bit mono WAV of random noise (incompressible, like a worst-case recording)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(os.urandom(int(seconds * rate) * 2))
    return out.getvalue()


def recordings_dir(platform: LocalPlatform) -> Path:
    path = platform.asterisk.host_dir / "spool" / "recording"
    path.mkdir(parents=True, exist_ok=True)
    return path


def put_on_asterisk(platform: LocalPlatform, name: str, data: bytes) -> Path:
    """A finished recording as Asterisk leaves it in its spool (what ARI's stored API serves)."""
    path = recordings_dir(platform) / f"{name}.wav"
    path.write_bytes(data)
    return path


def write_big_wav(path: Path, size: int) -> None:
    """A WAV of `size` bytes written in slices (the file never sits in memory whole)."""
    frames = (size - 44) // 2
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        left = frames
        while left:
            n = min(left, 1 << 20)
            w.writeframes(os.urandom(n * 2))
            left -= n


def finished_event(
    name: str,
    *,
    tenant_id: str = "acme",
    user_id: str = "alice",
    team_id: str = "sales",
    retention_days: int = 7,
    started_at: datetime | None = None,
    duration_s: float = 30.0,
    from_number: str = "+441234567890",
    to_number: str = "+15550100",
    mode: int = recording_pb2.RECORDING_MODE_COMPLIANT,
) -> recording_pb2.RecordingFinished:
    started = started_at or datetime.now(UTC).replace(microsecond=0)
    ended = started + timedelta(seconds=duration_s)
    recording_id = name
    return recording_pb2.RecordingFinished(
        header=call_pb2.EventHeader(
            event_id=f"{recording_id}:finished",
            tenant_id=tenant_id,
            call_id=f"call-{uuid.uuid4().hex[:8]}",
            occurred_at=to_timestamp(ended),
        ),
        recording_id=recording_id,
        asterisk_name=name,
        format="wav",
        mode=mode,  # type: ignore[arg-type]
        layout=recording_pb2.CHANNEL_LAYOUT_MIXED,
        user_id=user_id,
        team_id=team_id,
        from_number=from_number,
        to_number=to_number,
        started_at=to_timestamp(started),
        ended_at=to_timestamp(ended),
        retention_days=retention_days,
        source="call",
    )


async def publish_finished(
    nc: NatsClient, event: recording_pb2.RecordingFinished, msg_id: str | None = None
) -> None:
    js = nc.jetstream()
    await bus.ensure_stream(js, bus.RECORDINGS)
    await bus.publish_event(
        js,
        subjects.recording_event(event.header.tenant_id, subjects.RECORDING_FINISHED),
        event,
        msg_id or event.header.event_id,
    )


async def wait_state(
    mongo: AsyncMongoClient[dict[str, Any]],
    recording_id: str,
    state: str,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    recordings = mongo[RECORDING_DB].recordings
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        doc = await recordings.find_one({"_id": recording_id})
        if doc is not None and doc["state"] == state:
            return doc
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{recording_id}: {doc and doc['state']} after {timeout_s}s")
        await asyncio.sleep(0.1)


def platform_key(platform: LocalPlatform) -> PlatformKey:
    return PlatformKey("platform-1", base64.b64decode(platform.recording_platform_key))
