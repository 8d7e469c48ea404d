"""Messaging owns a durable consumer on CALLS and sees exactly the calls its alerts are about:
a missed call (CallMissed) is noted, an answered one is not.

(Recording no longer observes call events: routing hands it RecordingFinished on the
RECORDINGS stream; tests/e2e/test_call_recording.py covers it. Voicemail no longer watches
call events either: routing asks it over request/reply when a call reaches voicemail;
docs/voicemail.md.)"""

from __future__ import annotations

import asyncio
import json

import pytest
from ringwise_dev.fixture import ALICE
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import PhoneKind
from ringwise_dev.testing import StartPhone, new_caller, wait_cdrs
from ringwise_kit import bus

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def _noted_kinds(platform: LocalPlatform, call_id: str, *, want: set[str]) -> set[str]:
    """The call event kinds messaging logged for the call (waits up to 10 s for `want`)."""
    log_path = platform.services["messaging"].log_path
    noted: set[str] = set()
    for _ in range(100):
        lines = [json.loads(line) for line in log_path.read_text().splitlines() if line[:1] == "{"]
        noted = {
            line["kind"]
            for line in lines
            if line.get("event") == "call_event_noted" and line.get("call_id") == call_id
        }
        if noted == want:
            break
        await asyncio.sleep(0.1)
    return noted


async def test_messaging_notes_the_missed_call_and_not_the_answered_one(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    phone = await start_phone(PhoneKind.NOANSWER, ALICE)
    missed_caller = new_caller()
    await platform.sipp.call(ALICE.number, caller=missed_caller, cancel_after_ms=1500)
    [missed] = await wait_cdrs(platform, missed_caller)
    assert missed["disposition"] == "DISPOSITION_CANCELLED"
    assert await _noted_kinds(platform, missed["call_id"], want={"missed"}) == {"missed"}
    await phone.stop()

    await start_phone(PhoneKind.ANSWER, ALICE)
    answered_caller = new_caller()
    await platform.sipp.call(ALICE.number, caller=answered_caller, hold_ms=200)
    [answered] = await wait_cdrs(platform, answered_caller)
    assert answered["disposition"] == "DISPOSITION_ANSWERED"
    # Give messaging the time it took to note the missed call, then check it noted nothing.
    await asyncio.sleep(1.0)
    assert await _noted_kinds(platform, answered["call_id"], want=set()) == set()

    nc = await bus.connect(platform.infra.endpoints.nats_url, "e2e-consumers")
    try:
        info = await nc.jetstream().consumer_info("CALLS", "messaging")
        assert info.config.durable_name == "messaging"
        assert sorted(info.config.filter_subjects or []) == [
            "ringwise.v1.call.*.diverted",
            "ringwise.v1.call.*.missed",
        ]
        assert info.num_ack_pending == 0
    finally:
        await nc.drain()
