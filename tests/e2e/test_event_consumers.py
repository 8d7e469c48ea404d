"""Messaging owns a durable consumer on CALLS and sees every call.

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

EXPECTED_KINDS = {
    "messaging": {"ended"},
}


async def test_each_service_notes_the_events_of_a_call_on_its_own_durable_consumer(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    await start_phone(PhoneKind.ANSWER, ALICE)
    caller = new_caller()
    await platform.sipp.call(ALICE.number, caller=caller, hold_ms=200)
    [cdr] = await wait_cdrs(platform, caller)

    nc = await bus.connect(platform.infra.endpoints.nats_url, "e2e-consumers")
    try:
        js = nc.jetstream()
        for service, kinds in EXPECTED_KINDS.items():
            log_path = platform.services[service].log_path
            noted: set[str] = set()
            for _ in range(100):
                text = log_path.read_text().splitlines()
                lines = [json.loads(line) for line in text if line.startswith("{")]
                noted = {
                    line["kind"]
                    for line in lines
                    if line.get("event") == "call_event_noted"
                    and line.get("call_id") == cdr["call_id"]
                }
                if noted == kinds:
                    break
                await asyncio.sleep(0.1)
            assert noted == kinds, service
            info = await js.consumer_info("CALLS", service)
            assert info.config.durable_name == service
            assert info.num_ack_pending == 0
    finally:
        await nc.drain()
