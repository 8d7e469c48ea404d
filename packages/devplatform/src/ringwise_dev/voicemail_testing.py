"""Helpers for voicemail's tests against the real platform (Asterisk spool, SMTP sink, API)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import math
import struct
import wave
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from ringwise.api.v1 import api_pb2
from ringwise_kit.api import ApiCall, call_service, new_request_id, service_principal

from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import SippPhone

RATE = 8000


def tone_wav(seconds: float, hz: float = 440.0) -> bytes:
    """A real 8 kHz 16-bit mono WAV of the given length (what Asterisk records as "wav")."""
    frames = round(seconds * RATE)
    samples = (int(8000 * math.sin(2 * math.pi * hz * i / RATE)) for i in range(frames))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


def recording_dir(platform: LocalPlatform) -> Path:
    path = platform.asterisk.host_dir / "spool" / "recording"
    path.mkdir(parents=True, exist_ok=True)
    return path


def place_recording(platform: LocalPlatform, name: str, data: bytes) -> None:
    """Put a finished recording where Asterisk's own recordings land (its spool)."""
    (recording_dir(platform) / f"{name}.wav").write_bytes(data)


def mails(platform: LocalPlatform) -> list[EmailMessage]:
    maildir = platform.infra.endpoints.maildir
    found = []
    for sub in ("new", "cur"):
        for path in sorted((maildir / sub).glob("*")):
            found.append(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
    return found


def mails_to(platform: LocalPlatform, address: str) -> list[EmailMessage]:
    return [m for m in mails(platform) if m["To"] == address]


async def api(
    nc: NatsClient,
    operation: str,
    path_params: dict[str, str],
    body: Any = None,
    query: list[tuple[str, str]] | None = None,
) -> tuple[int, Any]:
    """Call a voicemail operation as the gateway would (as an internal service principal)."""
    principal: api_pb2.Principal = service_principal("voicemail-tests")
    call = ApiCall(
        operation=operation,
        principal=principal,
        path_params=path_params,
        query=query or [],
        body=json.dumps(body).encode() if body is not None else b"",
        request_id=new_request_id(),
    )
    reply = await call_service(nc, "voicemail", call, timeout_s=10)
    return reply.status, (json.loads(reply.body) if reply.body else None)


async def eventually(check: Any, timeout_s: float = 30.0, every_s: float = 0.2) -> Any:
    """Poll an async check until it returns a truthy value; the last value on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await check()
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(every_s)


async def last_mwi(
    phone: SippPhone, expect: tuple[bool, int, int, int], timeout_s: float = 15.0
) -> tuple[bool, int, int, int] | None:
    """The phone's latest message-waiting counts, once they are `expect` (or at the timeout)."""

    async def latest() -> tuple[bool, int, int, int] | None:
        counts = phone.mwi_counts()
        return counts[-1] if counts and counts[-1] == expect else None

    found = await eventually(latest, timeout_s=timeout_s)
    counts = phone.mwi_counts()
    return found or (counts[-1] if counts else None)


def sound_seconds(platform: LocalPlatform, *names: str) -> float:
    """Total length of Asterisk core sounds (the English ones the chroot has)."""
    folder = platform.asterisk.chroot / "usr/share/asterisk/sounds/en_US_f_Allison"
    total = 0.0
    for name in names:
        with wave.open(str(folder / f"{name}.wav")) as audio:
            total += audio.getnframes() / audio.getframerate()
    return total
