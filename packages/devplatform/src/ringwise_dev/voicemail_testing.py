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
from ringwise_dev.sipp import SippPhone, scenarios_dir

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
    *,
    principal: api_pb2.Principal | None = None,
    if_match: str = "",
    idempotency_key: str = "",
    service: str = "voicemail",
) -> tuple[int, Any]:
    """Call a service's operation (voicemail's unless told) as the gateway would (by default
    as an internal service)."""
    principal = principal or service_principal("voicemail-tests")
    call = ApiCall(
        if_match=if_match,
        operation=operation,
        principal=principal,
        path_params=path_params,
        query=query or [],
        body=json.dumps(body).encode() if body is not None else b"",
        request_id=new_request_id(),
        idempotency_key=idempotency_key,
    )
    reply = await call_service(nc, service, call, timeout_s=10)
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


# -- a caller at the keypad -----------------------------------------------------------------

SIPP_MEDIA = "/usr/share/sip-tester"
SPEECH_PCAP = "g711a.pcap"  # 7.05 s of PCMA speech
Step = tuple[str, int | str]
_INFO = """  <send retrans="500">
    <![CDATA[

      INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[$caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: <sip:[$caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={key}
      Duration=160

    ]]>
  </send>"""


def keypad_scenario(platform: LocalPlatform, name: str, steps: list[Step]) -> str:
    """Write a sipp caller scenario that, once answered, runs the steps in order:
    ("wait", ms), ("keys", "4711#") as SIP INFO key presses 400 ms apart, ("speak", ms) playing
    sipp's speech pcap and waiting ms. Then it waits for the far end's BYE (or sends its own
    after a minute). Returns the scenario's file name for SippWorkspace.call(scenario=...)."""
    template = (scenarios_dir() / "pstn_caller_voicemail.xml").read_text()
    head, _, tail = template.partition("  <!-- Listen to the greeting and the beep")
    _, _, tail = tail.partition('  <pause variable="talk" />\n')
    actions: list[str] = []
    cseq = 10
    for kind, value in steps:
        if kind == "wait":
            actions.append(f'  <pause milliseconds="{int(value)}" />')
        elif kind == "keys":
            # SIP INFO (application/dtmf-relay): sipp replays each RFC 4733 pcap with the same
            # RTP timestamp, which Asterisk takes for a repeat of the previous key.
            for key in str(value):
                cseq += 1
                actions.append(_INFO.format(cseq=cseq, key=key))
                actions.append('  <recv response="200" />')
                actions.append('  <pause milliseconds="400" />')
        elif kind == "speak":
            actions.append(
                f'  <nop><action><exec play_pcap_audio="{SIPP_MEDIA}/{SPEECH_PCAP}" />'
                "</action></nop>"
            )
            actions.append(f'  <pause milliseconds="{int(value)}" />')
        else:
            raise ValueError(f"unknown step {kind}")
    actions.append('  <pause milliseconds="60000" />')
    # Only the caller's number stays a -set variable; the timings are written in.
    head = head.replace(
        '<Global variables="caller,greeting_ms,talk_ms" />', '<Global variables="caller" />'
    )
    start = head.index("  <nop>\n    <action>\n      <assignstr")
    head = head[:start] + head[head.index("  </nop>\n", start) + len("  </nop>\n") :]
    # Our own BYE (if the far end never sends one) comes after every INFO.
    tail = tail.replace("CSeq: 2 BYE", f"CSeq: {cseq + 1} BYE")
    body = head + "\n".join(actions) + "\n" + tail
    body = body.replace(
        "      m=audio [media_port] RTP/AVP 8\n      a=rtpmap:8 PCMA/8000",
        "      m=audio [media_port] RTP/AVP 8 101\n      a=rtpmap:8 PCMA/8000\n"
        "      a=rtpmap:101 telephone-event/8000\n      a=fmtp:101 0-16",
    )
    folder = platform.sipp.host_dir / "scenarios"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(body)
    return name


def _alaw_to_linear(byte: int) -> int:
    """G.711 A-law to 16-bit linear (ITU-T G.711)."""
    a = byte ^ 0x55
    exponent = (a & 0x70) >> 4
    mantissa = a & 0x0F
    magnitude = (
        (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    )
    return magnitude if a & 0x80 else -magnitude


def speech_wav(platform: LocalPlatform, pad_s: float = 1.0) -> bytes:
    """What sipp's speech pcap says, as 8 kHz 16-bit WAV with pad_s of silence each side:
    the audio a recording of the caller holds (RTP payloads decoded from A-law)."""
    data = (platform.asterisk.chroot / SIPP_MEDIA.lstrip("/") / SPEECH_PCAP).read_bytes()
    samples = bytearray()
    offset = 24  # pcap global header
    while offset + 16 <= len(data):
        length = struct.unpack_from("<I", data, offset + 8)[0]
        packet = data[offset + 16 : offset + 16 + length]
        offset += 16 + length
        payload = packet[14 + 20 + 8 + 12 :]  # Ethernet, IPv4, UDP, RTP headers
        samples += b"".join(struct.pack("<h", _alaw_to_linear(b)) for b in payload)
    silence = b"\0\0" * round(pad_s * RATE)
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(RATE)
        audio.writeframes(silence + bytes(samples) + silence)
    return out.getvalue()
