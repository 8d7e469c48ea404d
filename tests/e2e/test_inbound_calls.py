"""A PSTN caller dials a Ringwise number: real Asterisk, sipp caller and phones, services."""

from __future__ import annotations

from datetime import datetime

import pytest
from ringwise.events.v1 import call_pb2
from ringwise_dev.fixture import ALICE, BOB, CAROL, DAVE, TENANT, UNKNOWN_NUMBER
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import PhoneKind
from ringwise_dev.testing import StartPhone, call_events, new_caller, wait_cdrs

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


async def test_caller_reaches_the_users_desk_phone_and_the_cdr_is_exact(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    phone = await start_phone(PhoneKind.ANSWER, ALICE, ring_ms=800)
    caller = new_caller()
    result = await platform.sipp.call(ALICE.number, caller=caller, hold_ms=3000)
    [call] = result.calls
    assert call.provisional[-1] == 180
    assert call.final_code == 200
    assert call.sent_bye and not call.far_end_bye
    [on_phone] = await phone.wait_calls(1)
    assert on_phone.answered

    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_ANSWERED"
    assert (cdr["tenant_id"], cdr["user_id"], cdr["device_id"]) == (TENANT, "alice", "alice-desk")
    assert (cdr["from_number"], cdr["to_number"]) == (caller, ALICE.number)
    assert cdr["direction"] == "DIRECTION_INBOUND"
    assert cdr["hangup_by"] == "caller"
    assert cdr["hangup_cause"] == 16
    # The caller talked 3 s after the answer; Asterisk's clock and sipp's agree to the second.
    assert cdr["billable_seconds"] == 3
    assert 3000 <= cdr["billable_ms"] < 3300
    ring_s = seconds_between(cdr["started_at"], cdr["answered_at"])
    assert 0.75 <= ring_s < 1.3
    assert abs(cdr["duration_ms"] / 1000 - (ring_s + cdr["billable_ms"] / 1000)) < 0.01

    events = await call_events(platform, cdr["call_id"])
    assert [type(e).__name__ for e in events] == [
        "CallStarted",
        "CallRouted",
        "CallAnswered",
        "CallEnded",
    ]
    _started, routed, answered, ended = events
    assert isinstance(routed, call_pb2.CallRouted)
    assert routed.decision.action == call_pb2.RoutingDecision.ACTION_RING
    assert (
        routed.decision.reasons[0] == f"number {ALICE.number} belongs to user alice of tenant acme"
    )
    assert [t.device_id for t in routed.decision.targets] == ["alice-desk"]
    assert isinstance(answered, call_pb2.CallAnswered)
    assert answered.device_id == "alice-desk"
    assert isinstance(ended, call_pb2.CallEnded)
    assert ended.header.event_id == f"{cdr['call_id']}:ended"
    assert all(e.header.call_id == cdr["call_id"] for e in events)


async def test_an_unknown_number_hears_not_in_service_and_is_refused_unallocated(
    platform: LocalPlatform,
) -> None:
    caller = new_caller()
    result = await platform.sipp.call(UNKNOWN_NUMBER, caller=caller)
    [call] = result.calls
    # The announcement plays as early media; the call is never answered (nothing billed).
    assert 183 in call.provisional
    assert call.final_code == 404
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_NOT_IN_SERVICE"
    assert cdr["hangup_cause"] == 1
    assert cdr["hangup_by"] == "platform"
    assert cdr["tenant_id"] == ""
    assert cdr["answered_at"] is None
    assert cdr["billable_seconds"] == 0
    # "The number you have dialed is not in service..." lasts about 5 s.
    assert cdr["duration_ms"] > 3000


async def test_nobody_answers_so_the_caller_hears_not_answering(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    phone = await start_phone(PhoneKind.NOANSWER, CAROL)
    caller = new_caller()
    result = await platform.sipp.call(CAROL.number, caller=caller)
    [call] = result.calls
    assert call.provisional[:2] == [100, 180]
    assert 183 in call.provisional
    assert call.final_code == 480
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_NO_ANSWER"
    assert cdr["user_id"] == "carol"
    assert cdr["hangup_cause"] == 19
    assert cdr["answered_at"] is None
    assert cdr["billable_seconds"] == 0
    # Carol's phone rang for her 5 s ring timeout and was then cancelled.
    assert cdr["duration_ms"] > 5000
    [on_phone] = await phone.wait_calls(1)
    assert on_phone.cancelled


async def test_a_busy_callee_gives_the_caller_busy(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    await start_phone(PhoneKind.BUSY, BOB)
    caller = new_caller()
    result = await platform.sipp.call(BOB.number, caller=caller)
    [call] = result.calls
    assert call.final_code == 486
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_BUSY"
    assert cdr["hangup_cause"] == 17
    assert cdr["billable_seconds"] == 0


async def test_an_unreachable_device_gives_unable_to_locate(platform: LocalPlatform) -> None:
    caller = new_caller()  # nothing listens on Dave's phone port: SIP timer B (8 s) expires
    result = await platform.sipp.call(DAVE.number, caller=caller, timeout_s=40)
    [call] = result.calls
    assert 183 in call.provisional
    assert call.final_code == 480
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_UNREACHABLE"
    assert cdr["hangup_cause"] == 20
    assert cdr["answered_at"] is None
    # Unreachable is known after timer B, before Dave's 10 s ring timeout.
    assert 7000 < cdr["duration_ms"] < 9500 + 5000
