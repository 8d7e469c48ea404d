"""Calls keep working, and no CDR is lost or doubled, when parts of the platform restart."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime

import aiohttp
import pytest
from ringwise.directory.v1 import resolve_pb2
from ringwise.events.v1 import call_pb2
from ringwise_dev.fixture import ALICE, CAROL, TENANT
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.services import http_ok
from ringwise_dev.sipp import PhoneKind
from ringwise_dev.testing import StartPhone, cdrs_of, new_caller, stream_events, wait_cdrs
from ringwise_kit import bus, subjects

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def answered_call_works(platform: LocalPlatform) -> None:
    caller = new_caller()
    result = await platform.sipp.call(ALICE.number, caller=caller, hold_ms=500)
    assert result.final_codes() == [200]
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_ANSWERED"


async def cached_afresh(platform: LocalPlatform, number: str) -> None:
    """Routing forgets the number as on a change (in memory and in Redis), so the next call
    caches the directory's answer for the cache's whole TTL: an entry cached earlier in the
    session can expire (300 s) while a test keeps the directory down."""
    nc = await bus.connect(platform.infra.endpoints.nats_url, "e2e-resilience")
    try:
        change = resolve_pb2.NumberChanged(tenant_id=TENANT, number=number)
        await nc.publish(subjects.number_changed(TENANT), change.SerializeToString())
        await nc.flush()
    finally:
        await nc.drain()
    await asyncio.sleep(0.5)  # routing drops the entry as the change arrives (milliseconds)


async def wait_ready(platform: LocalPlatform, service: str, timeout_s: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await _ready(platform, service):
        assert asyncio.get_running_loop().time() < deadline, f"{service} not ready again"
        await asyncio.sleep(0.1)


async def _ready(platform: LocalPlatform, service: str) -> bool:
    try:
        return await http_ok(platform.service_url(service, "/readyz"))
    except OSError:
        return False


async def test_a_caller_who_hangs_up_while_ringing_cancels_the_desk_phone(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    phone = await start_phone(PhoneKind.NOANSWER, ALICE)
    caller = new_caller()
    result = await platform.sipp.call(ALICE.number, caller=caller, cancel_after_ms=1500)
    [call] = result.calls
    assert call.final_code == 487
    [on_phone] = await phone.wait_calls(1)
    assert on_phone.cancelled
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_CANCELLED"
    assert cdr["hangup_by"] == "caller"
    assert cdr["answered_at"] is None
    assert cdr["billable_seconds"] == 0
    assert 1400 < cdr["duration_ms"] < 3000


async def test_routing_restarted_between_calls_takes_the_next_call(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    await start_phone(PhoneKind.ANSWER, ALICE)
    await answered_call_works(platform)
    await platform.restart_service("routing")  # SIGTERM: graceful
    await answered_call_works(platform)
    platform.services["routing"].kill()  # a crash
    await platform.services["routing"].start_and_wait()
    await answered_call_works(platform)


async def test_routing_reconnects_to_a_restarted_asterisk(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    await start_phone(PhoneKind.ANSWER, ALICE)
    await platform.asterisk.restart()
    # The ARI link drops with Asterisk and comes back by itself (backoff, then reconcile).
    await wait_ready(platform, "routing")
    await answered_call_works(platform)


async def test_a_call_ringing_when_routing_crashes_is_not_left_ringing(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    phone = await start_phone(PhoneKind.NOANSWER, CAROL)
    await start_phone(PhoneKind.ANSWER, ALICE)
    caller = new_caller()
    call = asyncio.create_task(platform.sipp.call(CAROL.number, caller=caller, timeout_s=30))
    await phone.wait_calls(1)
    platform.services["routing"].kill()
    await platform.services["routing"].start_and_wait()
    result = await call
    # The restarted routing found both legs orphaned and ended them: the caller gets a final
    # answer long before any timeout, and the phone stops ringing.
    [outcome] = result.calls
    assert outcome.final_code == 503
    [on_phone] = await phone.wait_calls(1)
    assert on_phone.cancelled
    await answered_call_works(platform)


async def caller_in_stasis(platform: LocalPlatform, caller: str, timeout_s: float = 10) -> None:
    """Wait until Asterisk has the caller's channel in our Stasis app (routing has, or is
    about to have, its StasisStart)."""
    asterisk = platform.asterisk
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with aiohttp.ClientSession(headers=asterisk.ari_auth_headers()) as session:
        while True:
            async with session.get(f"{asterisk.ari_url}/ari/channels") as resp:
                assert resp.status == 200
                channels = await resp.json()
            if any(
                c["caller"]["number"] == caller and c["dialplan"]["app_name"] == "Stasis"
                for c in channels
            ):
                return
            assert asyncio.get_running_loop().time() < deadline, "the call never reached Stasis"
            await asyncio.sleep(0.02)


async def test_a_caller_whose_routing_crashed_before_anything_rang_is_routed_afresh(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    """Routing dies while it looks up the number (the directory, stopped, holds the reply
    for up to its 1 s time-out): nothing rang and the call's state was never stored. The
    restarted routing finds the caller waiting and routes the call as if it had just come."""
    phone = await start_phone(PhoneKind.ANSWER, ALICE)
    await cached_afresh(platform, ALICE.number)  # so the lookup goes to the directory
    directory, routing = platform.services["directory"], platform.services["routing"]
    assert directory.pid is not None
    caller = new_caller()
    os.kill(directory.pid, signal.SIGSTOP)
    try:
        call = asyncio.create_task(
            platform.sipp.call(ALICE.number, caller=caller, hold_ms=1000, timeout_s=40)
        )
        await caller_in_stasis(platform, caller)
        routing.kill()
        crashed_at = datetime.now(UTC)
    finally:
        os.kill(directory.pid, signal.SIGCONT)
    await routing.start_and_wait()
    result = await call
    assert result.final_codes() == [200], result.output_tail
    [on_phone] = await phone.wait_calls(1)
    assert on_phone.answered
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_ANSWERED"
    assert cdr["hangup_by"] == "caller"
    # The call started when the caller's channel did, before the crash.
    assert datetime.fromisoformat(cdr["started_at"]) < crashed_at
    await asyncio.sleep(1)
    assert len(await cdrs_of(platform, caller)) == 1


async def test_billing_killed_while_200_calls_end_stores_every_cdr_exactly_once(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    await start_phone(PhoneKind.ANSWER, ALICE)
    caller = new_caller()
    billing = platform.services["billing"]
    calls = asyncio.create_task(
        platform.sipp.call(
            ALICE.number, caller=caller, hold_ms=300, calls=200, rate=20, timeout_s=120
        )
    )
    await wait_cdrs(platform, caller, count=40, timeout_s=60)
    billing.kill()  # SIGKILL mid-stream: some CDRs are stored but not yet acknowledged
    await asyncio.sleep(1.0)  # CallEnded events keep arriving on the stream meanwhile
    await billing.start_and_wait()
    result = await calls
    assert result.successful == 200, result.output_tail

    cdrs = await wait_cdrs(platform, caller, count=200, timeout_s=90)
    await asyncio.sleep(2)  # give any redelivered duplicate a chance to show
    cdrs = await cdrs_of(platform, caller)
    stored = [c["call_id"] for c in cdrs]
    ended = {
        e.header.call_id
        for e in await stream_events(platform)
        if isinstance(e, call_pb2.CallEnded) and e.from_number == caller
    }
    assert len(ended) == 200
    assert len(stored) == 200
    assert set(stored) == ended
    assert all(c["disposition"] == "DISPOSITION_ANSWERED" for c in cdrs)


async def test_with_the_directory_down_callers_hear_a_retry_later_and_cached_numbers_ring(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    await start_phone(PhoneKind.ANSWER, ALICE)
    await cached_afresh(platform, ALICE.number)
    await answered_call_works(platform)  # Alice's number is now in routing's Redis cache
    directory = platform.services["directory"]
    await directory.stop()
    try:
        caller = new_caller()
        result = await platform.sipp.call("+15550177", caller=caller)
        [call] = result.calls
        assert 183 in call.provisional  # "All circuits are busy now"
        assert call.final_code == 503
        [cdr] = await wait_cdrs(platform, caller)
        assert cdr["disposition"] == "DISPOSITION_FAILED"
        assert cdr["hangup_by"] == "platform"
        await answered_call_works(platform)
    finally:
        await directory.start_and_wait()
