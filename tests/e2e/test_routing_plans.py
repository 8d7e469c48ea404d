"""A caller reaches a user the way the user's routing profile says: real Asterisk, sipp
phones registered as the user's devices, profiles set through the gateway's API.

Every test builds its own office (a fresh tenant, users with numbers and registered phones),
so profiles never leak between tests.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from ringwise.events.v1 import call_pb2
from ringwise_dev.gateway_client import GatewayClient, new_tenant
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import PhoneKind, SippPhone
from ringwise_dev.testing import call_events, new_caller, register_until, wait_cdrs
from ringwise_dev.voicemail_testing import eventually, keypad_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

# Phone ports of this file (each phone takes two: its own and its REGISTER's).
_phone_slots = itertools.count(100, 2)
_numbers = itertools.count(int(time.time() * 10) % 100_000 * 10)


@dataclass
class Member:
    user_id: str
    number: str
    devices: dict[str, str] = field(default_factory=dict)  # label -> device id
    phones: dict[str, SippPhone] = field(default_factory=dict)  # label -> phone


class Office:
    """A fresh tenant whose users have numbers and sipp phones registered as their devices."""

    def __init__(self, platform: LocalPlatform, tenant_id: str, admin: GatewayClient) -> None:
        self.platform = platform
        self.tenant_id = tenant_id
        self.admin = admin
        self.phones: list[SippPhone] = []

    @property
    def base(self) -> str:
        return f"/v1/tenants/{self.tenant_id}"

    async def member(self, name: str, **phones: tuple[PhoneKind, dict[str, Any]]) -> Member:
        first = name.split()[0].lower()
        user = await self.admin.call(
            "POST",
            f"{self.base}/users",
            {"email": f"{first}@{self.tenant_id}.example", "name": name},
            status=201,
        )
        number = f"+1555079{next(_numbers) % 10_000_000:07d}"
        await self.admin.call(
            "POST",
            f"{self.base}/numbers",
            {"number": number, "assignment": {"type": "user", "id": user["user_id"]}},
            status=201,
        )
        await self.admin.call("POST", f"{self.base}/numbers/{number}/activate")
        member = Member(user["user_id"], number)
        for label, (kind, options) in phones.items():
            device = await self.admin.call(
                "POST",
                f"{self.base}/users/{member.user_id}/devices",
                {"kind": "sip_phone", "label": label},
                status=201,
            )
            port = self.platform.ports.phones + next(_phone_slots)
            phone = await self.platform.sipp.start_phone(kind, port, **options)
            self.phones.append(phone)
            await register_until(
                self.platform, device["sip_username"], device["sip_password"], port, registered=True
            )
            member.devices[label] = device["device_id"]
            member.phones[label] = phone
        return member

    async def routing(self, member: Member) -> dict[str, Any]:
        profile: dict[str, Any] = await self.admin.call(
            "GET", f"{self.base}/users/{member.user_id}/routing"
        )
        return profile

    async def set_routing(self, member: Member, profile: dict[str, Any]) -> None:
        await self.admin.call("PUT", f"{self.base}/users/{member.user_id}/routing", profile)


@pytest_asyncio.fixture(loop_scope="session")
async def office(platform: LocalPlatform, session: aiohttp.ClientSession) -> AsyncIterator[Office]:
    tenant = await new_tenant(platform, session)
    built = Office(platform, tenant.tenant_id, tenant.admin)
    yield built
    for phone in built.phones:
        await phone.stop()


def terminal_id(profile: dict[str, Any], device_id: str) -> str:
    [found] = [t["id"] for t in profile["terminals"] if t.get("device_id") == device_id]
    return str(found)


async def events_of(platform: LocalPlatform, call_id: str, count: int) -> list[Any]:
    """The call's events once `count` of them are on the stream."""

    async def enough() -> list[Any] | None:
        found = await call_events(platform, call_id)
        return found if len(found) >= count else None

    found = await eventually(enough, timeout_s=10)
    assert found is not None, f"fewer than {count} events for call {call_id}"
    return list(found)


def routed(events: list[Any]) -> call_pb2.CallRouted:
    [found] = [e for e in events if isinstance(e, call_pb2.CallRouted)]
    return found


async def test_devices_ring_together_the_first_answer_wins_and_the_other_phone_is_cancelled(
    platform: LocalPlatform, office: Office
) -> None:
    # The default routing: every device of the user rings at once (Duet).
    dana = await office.member(
        "Dana Duet",
        desk=(PhoneKind.ANSWER, {"ring_ms": 1500}),
        mobile=(PhoneKind.NOANSWER, {}),
    )
    caller = new_caller()
    result = await platform.sipp.call(dana.number, caller=caller, hold_ms=2000)
    [call] = result.calls
    assert call.final_code == 200
    [on_desk] = await dana.phones["desk"].wait_calls(1)
    [on_mobile] = await dana.phones["mobile"].wait_calls(1)
    assert on_desk.answered
    # The losing phone was rung from the start and got CANCEL as soon as the desk answered.
    assert on_mobile.cancelled and not on_mobile.answered
    assert on_mobile.invite_at is not None and on_desk.answered_at is not None
    assert abs(on_mobile.invite_at - on_desk.invite_at) < 0.5  # type: ignore[operator]
    assert on_desk.answered_at < on_mobile.invite_at + 2.5

    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_ANSWERED"
    assert cdr["device_id"] == dana.devices["desk"]
    assert cdr["user_id"] == dana.user_id
    assert cdr["billable_seconds"] == 2
    events = await events_of(platform, cdr["call_id"], 4)
    decision = routed(events).decision
    assert {t.device_id for t in decision.targets} == set(dana.devices.values())
    assert decision.state == "Available"
    assert decision.steps[0].startswith("ring simultaneous ")
    assert decision.reason_codes[:2] == ["number.found", "state.default"]
    assert len(decision.reason_codes) == len(decision.reasons)
    assert not [e for e in events if isinstance(e, call_pb2.CallMissed)]


async def test_sequential_ring_tries_each_device_for_its_own_timeout(
    platform: LocalPlatform, office: Office
) -> None:
    sam = await office.member(
        "Sam Sequence",
        desk=(PhoneKind.NOANSWER, {}),
        mobile=(PhoneKind.ANSWER, {"ring_ms": 500}),
    )
    profile = await office.routing(sam)
    desk = terminal_id(profile, sam.devices["desk"])
    mobile = terminal_id(profile, sam.devices["mobile"])
    for terminal in profile["terminals"]:
        terminal["ring_timeout_s"] = 5 if terminal["id"] == desk else 20
    profile["states"]["Available"]["terminals"] = [desk, mobile]
    profile["states"]["Available"]["ring_mode"] = "sequential"
    await office.set_routing(sam, profile)

    caller = new_caller()
    result = await platform.sipp.call(sam.number, caller=caller, hold_ms=1000, timeout_s=40)
    assert result.final_codes() == [200]
    [on_desk] = await sam.phones["desk"].wait_calls(1)
    [on_mobile] = await sam.phones["mobile"].wait_calls(1)
    assert on_desk.cancelled and on_mobile.answered
    assert on_desk.invite_at is not None and on_mobile.invite_at is not None
    # The mobile is rung only after the desk's 5 s.
    assert 4.8 < on_mobile.invite_at - on_desk.invite_at < 7.0
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["device_id"] == sam.devices["mobile"]
    events = await events_of(platform, cdr["call_id"], 4)
    assert list(routed(events).decision.steps) == [
        f"ring sequential {desk}/5,{mobile}/20",
        "voicemail available",
    ]


async def test_a_blocked_caller_hears_the_refusal_and_no_phone_rings(
    platform: LocalPlatform, office: Office
) -> None:
    bea = await office.member("Bea Blocking", desk=(PhoneKind.ANSWER, {}))
    caller = new_caller()
    profile = await office.routing(bea)
    profile["inbound_filter"]["blocked"] = [caller]
    await office.set_routing(bea, profile)

    result = await platform.sipp.call(bea.number, caller=caller)
    [call] = result.calls
    assert 183 in call.provisional  # the refusal plays as early media
    assert call.final_code == 403  # cause 21, call rejected (Asterisk: 403 Forbidden)
    assert bea.phones["desk"].calls_handled() == 0
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["answered_at"] is None and cdr["hangup_cause"] == 21
    events = await events_of(platform, cdr["call_id"], 4)
    decision = routed(events).decision
    assert decision.action == call_pb2.RoutingDecision.ACTION_REJECT
    assert "caller.blocked.user" in decision.reason_codes
    [missed] = [e for e in events if isinstance(e, call_pb2.CallMissed)]
    assert (missed.user_id, missed.reason) == (bea.user_id, "rejected")


async def test_a_vip_reaches_a_user_on_holiday_others_do_not(
    platform: LocalPlatform, office: Office
) -> None:
    hal = await office.member("Hal Holiday", desk=(PhoneKind.ANSWER, {"ring_ms": 300}))
    vip = new_caller()
    profile = await office.routing(hal)
    profile["manual"] = {"state": "Holiday", "until": None}
    profile["vip_numbers"] = [vip]
    await office.set_routing(hal, profile)

    other = new_caller()
    await platform.sipp.call(hal.number, caller=other, timeout_s=40)
    assert hal.phones["desk"].calls_handled() == 0
    [cdr] = await wait_cdrs(platform, other)
    events = await events_of(platform, cdr["call_id"], 3)
    assert routed(events).decision.state == "Holiday"
    assert list(routed(events).decision.steps) == ["voicemail holiday"]

    result = await platform.sipp.call(hal.number, caller=vip, hold_ms=1000)
    assert result.final_codes() == [200]
    [on_desk] = await hal.phones["desk"].wait_calls(1)
    assert on_desk.answered
    [cdr] = await wait_cdrs(platform, vip)
    assert cdr["device_id"] == hal.devices["desk"]
    events = await events_of(platform, cdr["call_id"], 4)
    assert {"caller.vip", "vip.bypass"} <= set(routed(events).decision.reason_codes)


async def test_the_work_schedule_switches_between_ringing_and_voicemail(
    platform: LocalPlatform, office: Office
) -> None:
    wes = await office.member("Wes Worktime", desk=(PhoneKind.ANSWER, {"ring_ms": 300}))
    now = datetime.now(UTC)
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

    def window(start: datetime, end: datetime, state: str) -> dict[str, Any]:
        return {"days": every_day, "start": f"{start:%H:%M}", "end": f"{end:%H:%M}", "state": state}

    profile = await office.routing(wes)
    # Busy (voicemail) for the hour around now, Available otherwise.
    profile["schedule"] = {
        "timezone": "UTC",
        "entries": [window(now - timedelta(minutes=30), now + timedelta(minutes=30), "Busy")],
        "otherwise": "Available",
    }
    await office.set_routing(wes, profile)
    busy_caller = new_caller()
    await platform.sipp.call(wes.number, caller=busy_caller, timeout_s=40)
    assert wes.phones["desk"].calls_handled() == 0
    [cdr] = await wait_cdrs(platform, busy_caller)
    events = await events_of(platform, cdr["call_id"], 3)
    assert routed(events).decision.state == "Busy"
    assert "state.schedule" in routed(events).decision.reason_codes

    # The same schedule moved away from now: the user is Available and the desk rings.
    profile["schedule"]["entries"] = [
        window(now + timedelta(hours=2), now + timedelta(hours=3), "Busy")
    ]
    await office.set_routing(wes, profile)
    caller = new_caller()
    result = await platform.sipp.call(wes.number, caller=caller, hold_ms=1000)
    assert result.final_codes() == [200]
    [cdr] = await wait_cdrs(platform, caller)
    events = await events_of(platform, cdr["call_id"], 4)
    assert routed(events).decision.state == "Available"
    assert "state.schedule_otherwise" in routed(events).decision.reason_codes


async def test_nobody_answers_so_the_call_goes_to_the_delegate(
    platform: LocalPlatform, office: Office
) -> None:
    bob = await office.member("Bob Boss", desk=(PhoneKind.NOANSWER, {}))
    dee = await office.member("Dee Delegate", desk=(PhoneKind.ANSWER, {"ring_ms": 300}))
    profile = await office.routing(bob)
    for terminal in profile["terminals"]:
        terminal["ring_timeout_s"] = 5
    profile["delegates"] = [dee.user_id]
    profile["states"]["Available"]["fallback"] = {"kind": "delegate", "target": dee.user_id}
    await office.set_routing(bob, profile)

    caller = new_caller()
    result = await platform.sipp.call(bob.number, caller=caller, hold_ms=1000, timeout_s=40)
    assert result.final_codes() == [200]
    [on_bob] = await bob.phones["desk"].wait_calls(1)
    [on_dee] = await dee.phones["desk"].wait_calls(1)
    assert on_bob.cancelled and on_dee.answered
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["user_id"] == bob.user_id
    assert cdr["device_id"] == dee.devices["desk"]
    assert cdr["disposition"] == "DISPOSITION_ANSWERED"
    events = await events_of(platform, cdr["call_id"], 5)
    [diverted] = [e for e in events if isinstance(e, call_pb2.CallDiverted)]
    assert (diverted.from_user_id, diverted.kind, diverted.target, diverted.alert) == (
        bob.user_id,
        "delegate",
        dee.user_id,
        "delegated-call",
    )
    assert diverted.caller_number == caller


async def test_screened_call_the_user_accepts_with_star_after_hearing_the_name(
    platform: LocalPlatform, office: Office
) -> None:
    # The phone listens to the whole whisper (about 6 s) before it presses *.
    sue = await office.member(
        "Sue Screen", desk=(PhoneKind.ANSWER_KEY, {"ring_ms": 300, "key": "*", "key_ms": 7000})
    )
    profile = await office.routing(sue)
    profile["screening"] = {"enabled": True, "ask_name": True}
    await office.set_routing(sue, profile)

    caller = new_caller()
    log_before = platform.asterisk.messages_log_path.stat().st_size
    # The caller says their name after the prompt, then waits for the user.
    scenario = keypad_scenario(platform, "screen_caller_name.xml", [("speak", 7000)])
    result = await platform.sipp.call(sue.number, caller=caller, scenario=scenario, timeout_s=90)
    assert result.final_codes() == [200]
    [on_desk] = await sue.phones["desk"].wait_calls(1)
    assert on_desk.answered and on_desk.sent_bye  # accepted, talked, hung up
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_ANSWERED"
    assert cdr["device_id"] == sue.devices["desk"]
    assert cdr["hangup_by"] == "callee"
    # The phone talks 4 s after its key; the call is billed from the acceptance.
    assert 3 <= cdr["billable_seconds"] <= 5
    events = await events_of(platform, cdr["call_id"], 4)
    assert routed(events).decision.steps[0] == "screen name"
    assert routed(events).decision.steps[1].endswith(" whisper")
    with platform.asterisk.messages_log_path.open() as log:
        log.seek(log_before)
        played = log.read()
    # The phone heard "call from", the caller's recorded name, "press star".
    whisper = [
        "Playing 'followme/call-from.",
        f"spool/recording/rw-screen-{cdr['call_id']}.",
        "Playing 'vm-press.",
        "Playing 'digits/star.",
    ]
    positions = [played.find(line) for line in whisper]
    assert -1 not in positions, positions
    assert positions == sorted(positions)


async def test_screened_call_the_user_refuses_so_the_caller_is_not_connected(
    platform: LocalPlatform, office: Office
) -> None:
    ray = await office.member(
        "Ray Refuser", desk=(PhoneKind.ANSWER_KEY, {"ring_ms": 300, "key": "1"})
    )
    profile = await office.routing(ray)
    profile["screening"] = {"enabled": True, "ask_name": True}
    await office.set_routing(ray, profile)

    caller = new_caller()
    scenario = keypad_scenario(platform, "screen_caller_refused.xml", [("speak", 7000)])
    result = await platform.sipp.call(ray.number, caller=caller, scenario=scenario, timeout_s=90)
    assert result.exit_code == 0, result.output_tail
    [on_desk] = await ray.phones["desk"].wait_calls(1)
    # Any key but * refuses: the platform hangs up the phone's leg.
    assert on_desk.answered and on_desk.far_end_bye and not on_desk.sent_bye
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["answered_at"] is None
    assert cdr["device_id"] == ""
    assert cdr["hangup_by"] == "platform"
    events = await events_of(platform, cdr["call_id"], 4)
    assert not [e for e in events if isinstance(e, call_pb2.CallAnswered)]
    [missed] = [e for e in events if isinstance(e, call_pb2.CallMissed)]
    assert missed.reason == "no_answer"


async def test_a_caller_without_the_call_password_never_reaches_the_phone(
    platform: LocalPlatform, office: Office
) -> None:
    pia = await office.member("Pia Password", desk=(PhoneKind.ANSWER, {"ring_ms": 300}))
    profile = await office.routing(pia)
    profile["screening"] = {"enabled": True, "ask_name": False, "password": "4711"}
    await office.set_routing(pia, profile)

    wrong = new_caller()
    keys: list[tuple[str, int | str]] = [("wait", 1500), ("keys", "1111#"), ("wait", 3000)] * 3
    scenario = keypad_scenario(platform, "screen_wrong_password.xml", keys)
    result = await platform.sipp.call(pia.number, caller=wrong, scenario=scenario, timeout_s=90)
    assert result.exit_code == 0, result.output_tail
    assert pia.phones["desk"].calls_handled() == 0
    [cdr] = await wait_cdrs(platform, wrong)
    assert cdr["hangup_by"] == "platform" and cdr["answered_at"] is None

    right = new_caller()
    scenario = keypad_scenario(
        platform, "screen_right_password.xml", [("wait", 1500), ("keys", "4711#")]
    )
    result = await platform.sipp.call(pia.number, caller=right, scenario=scenario, timeout_s=90)
    [on_desk] = await pia.phones["desk"].wait_calls(1)
    assert on_desk.answered
    [cdr] = await wait_cdrs(platform, right)
    assert cdr["device_id"] == pia.devices["desk"]


@pytest.mark.parametrize(("restart", "hold_s"), [("crash", 8), ("graceful", 14)])
async def test_routing_restarts_during_a_conversation_which_goes_on_and_gets_its_cdr(
    platform: LocalPlatform, office: Office, restart: str, hold_s: int
) -> None:
    rex = await office.member("Rex Restart", desk=(PhoneKind.ANSWER, {"ring_ms": 300}))
    caller = new_caller()
    call = asyncio.create_task(
        platform.sipp.call(rex.number, caller=caller, hold_ms=hold_s * 1000, timeout_s=60)
    )
    await rex.phones["desk"].wait_calls(1)
    await asyncio.sleep(1.5)  # answered and bridged
    if restart == "crash":
        platform.services["routing"].kill()
        await platform.services["routing"].start_and_wait()
    else:
        # SIGTERM: routing waits a moment for calls to end, then leaves this one up.
        await platform.restart_service("routing")
    result = await call
    [outcome] = result.calls
    assert outcome.final_code == 200 and outcome.sent_bye and not outcome.far_end_bye

    async def phone_hung_up() -> bool:
        [on_desk] = rex.phones["desk"].calls()
        return on_desk.far_end_bye

    # The new instance adopted the conversation: the caller's hang-up reached the phone.
    assert await eventually(phone_hung_up, timeout_s=5)

    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_ANSWERED"
    assert cdr["device_id"] == rex.devices["desk"]
    assert cdr["hangup_by"] == "caller"
    assert cdr["billable_seconds"] == hold_s
    await asyncio.sleep(1)
    assert len(await wait_cdrs(platform, caller)) == 1


async def test_routing_crashes_while_phones_ring_and_nothing_rings_on(
    platform: LocalPlatform, office: Office
) -> None:
    nia = await office.member(
        "Nia Noanswer", desk=(PhoneKind.NOANSWER, {}), mobile=(PhoneKind.NOANSWER, {})
    )
    caller = new_caller()
    call = asyncio.create_task(platform.sipp.call(nia.number, caller=caller, timeout_s=40))
    await nia.phones["desk"].wait_calls(1)
    await nia.phones["mobile"].wait_calls(1)
    platform.services["routing"].kill()
    await platform.services["routing"].start_and_wait()
    result = await call
    [outcome] = result.calls
    assert outcome.final_code == 503
    for phone in nia.phones.values():
        [rung] = await phone.wait_calls(1)
        assert rung.cancelled
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_FAILED"
    assert cdr["user_id"] == nia.user_id
    events = await events_of(platform, cdr["call_id"], 4)
    [missed] = [e for e in events if isinstance(e, call_pb2.CallMissed)]
    assert missed.user_id == nia.user_id


async def test_a_caller_presses_0_in_voicemail_and_reaches_the_delegate(
    platform: LocalPlatform, office: Office
) -> None:
    mo = await office.member("Mo Meeting", desk=(PhoneKind.ANSWER, {}))
    dee = await office.member(
        "Dee Deputy", desk=(PhoneKind.ANSWER_AND_HANGUP, {"ring_ms": 300, "hold_ms": 2000})
    )
    await office.admin.call(
        "PUT",
        f"{office.base}/users/{mo.user_id}/voicemail",
        {"email": f"mo@{office.tenant_id}.example"},
        status=201,
    )
    profile = await office.routing(mo)
    profile["manual"] = {"state": "Busy", "until": None}
    profile["delegates"] = [dee.user_id]
    await office.set_routing(mo, profile)

    caller = new_caller()
    scenario = keypad_scenario(platform, "voicemail_breakout.xml", [("wait", 1500), ("keys", "0")])
    result = await platform.sipp.call(mo.number, caller=caller, scenario=scenario, timeout_s=60)
    assert result.exit_code == 0, result.output_tail
    assert mo.phones["desk"].calls_handled() == 0  # Busy: Mo's phone never rang
    [on_dee] = await dee.phones["desk"].wait_calls(1)
    assert on_dee.answered and on_dee.sent_bye
    [cdr] = await wait_cdrs(platform, caller)
    assert cdr["disposition"] == "DISPOSITION_ANSWERED"
    assert (cdr["user_id"], cdr["device_id"]) == (mo.user_id, dee.devices["desk"])
    assert cdr["hangup_by"] == "callee"
    events = await events_of(platform, cdr["call_id"], 5)
    assert list(routed(events).decision.steps) == ["voicemail busy"]
    [diverted] = [e for e in events if isinstance(e, call_pb2.CallDiverted)]
    assert (diverted.kind, diverted.target) == ("delegate", dee.user_id)
    assert not [e for e in events if isinstance(e, call_pb2.CallMissed)]


async def test_nobody_answers_so_the_team_rings_and_a_member_answers(
    platform: LocalPlatform, office: Office
) -> None:
    tom = await office.member("Tom Teamlead", desk=(PhoneKind.BUSY, {}))
    ann = await office.member("Ann Agent", desk=(PhoneKind.NOANSWER, {}))
    ben = await office.member("Ben Agent", desk=(PhoneKind.ANSWER, {"ring_ms": 800}))
    team = await office.admin.call(
        "POST",
        f"{office.base}/teams",
        {
            "name": "Support",
            "extension": "700",
            "ring_strategy": "simultaneous",
            "members": [ann.user_id, ben.user_id],
        },
        status=201,
    )
    profile = await office.routing(tom)
    profile["states"]["Available"]["fallback"] = {"kind": "team", "target": team["team_id"]}
    await office.set_routing(tom, profile)

    caller = new_caller()
    result = await platform.sipp.call(tom.number, caller=caller, hold_ms=1000, timeout_s=40)
    assert result.final_codes() == [200]
    [on_ann] = await ann.phones["desk"].wait_calls(1)
    [on_ben] = await ben.phones["desk"].wait_calls(1)
    assert on_ben.answered and on_ann.cancelled
    [cdr] = await wait_cdrs(platform, caller)
    assert (cdr["user_id"], cdr["device_id"]) == (tom.user_id, ben.devices["desk"])
    events = await events_of(platform, cdr["call_id"], 5)
    [diverted] = [e for e in events if isinstance(e, call_pb2.CallDiverted)]
    assert (diverted.kind, diverted.target) == ("team", team["team_id"])
