"""The Asterisk + sipp harness works end to end: ARI/Stasis calls and the bench-static baseline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from ringwise_dev.asterisk import AsteriskInstance
from ringwise_dev.ports import HARNESS_TEST_PORTS, HOST, PSTN_HOST
from ringwise_dev.sipp import STATIC_TRUNK_HOST, PhoneKind, SippWorkspace

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

# Its own port base, so these tests never collide with the shared test platform (22000).
PORTS = HARNESS_TEST_PORTS
Event = dict[str, Any]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def asterisk() -> AsyncIterator[AsteriskInstance]:
    instance = AsteriskInstance(PORTS, "harness-test")
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture
def sipp(asterisk: AsteriskInstance) -> SippWorkspace:
    return SippWorkspace.for_asterisk(asterisk)


class Ari:
    """Just enough ARI for these tests: REST calls plus a queue of websocket events."""

    def __init__(self, asterisk: AsteriskInstance, session: aiohttp.ClientSession) -> None:
        self.base = f"{asterisk.ari_url}/ari"
        self.session = session
        self.events: asyncio.Queue[Event] = asyncio.Queue()

    async def request(self, method: str, path: str, **params: str) -> Any:
        async with self.session.request(method, f"{self.base}{path}", params=params) as resp:
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json() if resp.content_type == "application/json" else None

    async def wait_for(
        self, kind: str, match: Callable[[Event], bool] = lambda _e: True, timeout_s: float = 10
    ) -> Event:
        deadline = time.monotonic() + timeout_s
        while True:
            event = await asyncio.wait_for(self.events.get(), deadline - time.monotonic())
            if event["type"] == kind and match(event):
                return event


@pytest_asyncio.fixture(loop_scope="session")
async def ari(asterisk: AsteriskInstance) -> AsyncIterator[Ari]:
    async with aiohttp.ClientSession(headers=asterisk.ari_auth_headers()) as session:
        client = Ari(asterisk, session)
        url = f"ws://127.0.0.1:{PORTS.ari_http}/ari/events?app=ringwise&subscribeAll=false"
        async with session.ws_connect(url) as ws:

            async def pump() -> None:
                async for msg in ws:
                    if msg.type is aiohttp.WSMsgType.TEXT:
                        client.events.put_nowait(json.loads(msg.data))

            task = asyncio.create_task(pump())
            try:
                yield client
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def test_asterisk_restarts_and_answers_cli(asterisk: AsteriskInstance) -> None:
    await asterisk.restart()
    endpoints = await asterisk.rx("pjsip show endpoints")
    for name in ("pstn", "pstn-static", "phones"):
        assert f"Endpoint:  {name} " in endpoints
    assert f"127.0.0.1:{PORTS.sip}" in endpoints
    for log in (asterisk.log_path, asterisk.messages_log_path):
        assert asterisk.ari_password not in log.read_text()


async def test_pstn_call_through_stasis(sipp: SippWorkspace, ari: Ari) -> None:
    caller = asyncio.create_task(sipp.call("+15550100", wait_for_far_bye=True, timeout_s=15))

    start = await ari.wait_for("StasisStart")
    channel = start["channel"]
    assert start["args"] == ["inbound"]
    assert channel["dialplan"]["exten"] == "+15550100"
    assert channel["caller"]["number"] == "+15550001"

    await ari.request("POST", f"/channels/{channel['id']}/answer")
    # Core sounds only: "the-party-you-are-calling" is in the extra sounds, which Debian lacks.
    playback_id = str(uuid.uuid4())
    await ari.request(
        "POST", f"/channels/{channel['id']}/play/{playback_id}", media="sound:vm-nobodyavail"
    )
    finished = await ari.wait_for("PlaybackFinished", lambda e: e["playback"]["id"] == playback_id)
    assert finished["playback"]["state"] == "done"
    await ari.request("DELETE", f"/channels/{channel['id']}")

    result = await caller
    assert result.exit_code == 0, result.output_tail
    [call] = result.calls
    assert call.final_code == 200
    assert call.far_end_bye and not call.sent_bye
    assert call.answer_ms is not None


async def test_missing_sound_fails_the_playback(sipp: SippWorkspace, ari: Ari) -> None:
    caller = asyncio.create_task(sipp.call("+15550101", wait_for_far_bye=True, timeout_s=15))
    channel = (await ari.wait_for("StasisStart"))["channel"]
    playback_id = str(uuid.uuid4())
    await ari.request(
        "POST",
        f"/channels/{channel['id']}/play/{playback_id}",
        media="sound:the-party-you-are-calling",
    )
    finished = await ari.wait_for("PlaybackFinished", lambda e: e["playback"]["id"] == playback_id)
    assert finished["playback"]["state"] == "failed"
    # Playing to an unanswered channel gave the caller early media (183).
    await ari.request("DELETE", f"/channels/{channel['id']}", reason="busy")
    [call] = (await caller).calls
    assert 183 in call.provisional
    assert call.final_code == 486


async def test_bench_static_call_is_answered(sipp: SippWorkspace) -> None:
    phone = await sipp.start_phone(PhoneKind.ANSWER, PORTS.phones, ring_ms=100)
    try:
        result = await sipp.call(
            str(PORTS.phones), source_ip=STATIC_TRUNK_HOST, hold_ms=200, timeout_s=15
        )
        assert result.exit_code == 0, result.output_tail
        [call] = result.calls
        assert call.final_code == 200
        assert call.provisional[-1] == 180
        assert call.sent_bye and not call.far_end_bye
        assert call.pdd_ms is not None and call.pdd_ms < 1000
        assert len(result.rtt["pdd"]) == 1
        [seen] = await phone.wait_calls(1)
        assert seen.final_code == 200 and seen.far_end_bye
    finally:
        await phone.stop()


async def test_bench_static_busy_phone_gives_486(sipp: SippWorkspace) -> None:
    phone = await sipp.start_phone(PhoneKind.BUSY, PORTS.phones + 1)
    try:
        result = await sipp.call(str(PORTS.phones + 1), source_ip=STATIC_TRUNK_HOST, timeout_s=15)
        assert result.final_codes() == [486]
        assert phone.calls_handled() == 1
    finally:
        await phone.stop()


async def test_phone_hangs_up_and_serves_many_calls(sipp: SippWorkspace) -> None:
    phone = await sipp.start_phone(
        PhoneKind.ANSWER_AND_HANGUP, PORTS.phones + 2, ring_ms=0, hold_ms=200
    )
    try:
        result = await sipp.call(
            str(PORTS.phones + 2),
            source_ip=STATIC_TRUNK_HOST,
            wait_for_far_bye=True,
            calls=5,
            rate=20,
            limit=5,
            timeout_s=15,
        )
        assert result.exit_code == 0, result.output_tail
        assert result.successful == 5
        assert all(c.far_end_bye for c in result.calls)
        assert result.pdd_percentile(99) is not None
        assert phone.calls_handled() == 5
    finally:
        await phone.stop()


async def test_noanswer_phone_is_cancelled(sipp: SippWorkspace, ari: Ari) -> None:
    phone = await sipp.start_phone(PhoneKind.NOANSWER, PORTS.phones + 3)
    try:
        caller = asyncio.create_task(sipp.call("+15550102", wait_for_far_bye=True, timeout_s=15))
        inbound = (await ari.wait_for("StasisStart"))["channel"]
        outbound = await ari.request(
            "POST",
            "/channels/create",
            endpoint=f"PJSIP/phones/sip:bob@127.0.0.1:{PORTS.phones + 3}",
            app="ringwise",
            appArgs="outbound",
        )
        await ari.wait_for("StasisStart", lambda e: e["channel"]["id"] == outbound["id"])
        await ari.request("POST", f"/channels/{outbound['id']}/dial", timeout="1")
        ringing = await ari.wait_for("Dial", lambda e: e.get("dialstatus") == "RINGING")
        assert ringing["peer"]["id"] == outbound["id"]
        # A dial timeout shows as the channel's end with cause 19, not as a Dial event.
        gone = await ari.wait_for(
            "ChannelDestroyed", lambda e: e["channel"]["id"] == outbound["id"]
        )
        assert gone["cause"] == 19
        await ari.request("DELETE", f"/channels/{inbound['id']}", reason="no_answer")
        assert (await caller).final_codes() == [480]
        [seen] = await phone.wait_calls(1)
        assert seen.cancelled and seen.final_code == 487
    finally:
        await phone.stop()


def _stray_then_invite(host: str, port: int, method: str) -> tuple[list[str], list[str]]:
    """Send `method` for a call the sipp never saw, then a new INVITE; the status lines of
    what came back to each."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(1.0)
        local = sock.getsockname()[1]

        def send(method: str, to_tag: str) -> list[str]:
            request = (
                f"{method} sip:x@{host}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};rport;branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                f"From: <sip:+441632960001@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
                f"To: <sip:+15550100@{host}>{to_tag}\r\n"
                f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 7 {method}\r\n"
                f"Contact: <sip:caller@127.0.0.1:{local}>\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(request.encode(), (host, port))
            got: list[str] = []
            with contextlib.suppress(TimeoutError):
                while len(got) < 2:
                    got.append(sock.recv(4096).decode().split("\r\n", 1)[0])
            return got

        return send(method, ";tag=gone-call"), send("INVITE", "")


@pytest.mark.parametrize("method", ["BYE", "INFO"])
async def test_answering_phones_and_the_far_end_survive_a_request_of_a_call_they_never_saw(
    sipp: SippWorkspace, method: str
) -> None:
    # Asterisk retransmits a BYE for 32 s to a sipp that was stopped mid-call; the next sipp
    # on that port gets it. sipp 3.8 died of it (SIGSEGV) and the next test's call to that
    # port went unanswered.
    answering = [PhoneKind.ANSWER, PhoneKind.ANSWER_AND_HANGUP, PhoneKind.ANSWER_KEY]
    answering.append(PhoneKind.KEEP_RECORDING)
    started = [
        (await sipp.start_phone(kind, PORTS.phones + 10 + n, ring_ms=0), HOST)
        for n, kind in enumerate(answering)
    ]
    started.append((await sipp.start_far_end(PORTS.phones + 20, ring_ms=0), PSTN_HOST))
    try:
        for phone, host in started:
            stray, invite = await asyncio.to_thread(_stray_then_invite, host, phone.port, method)
            assert stray == ["SIP/2.0 200 OK"], (phone.kind, stray)
            assert "SIP/2.0 200 OK" in invite, (phone.kind, invite)
            assert phone.process.running, phone.kind
    finally:
        for phone, _ in started:
            await phone.stop()
