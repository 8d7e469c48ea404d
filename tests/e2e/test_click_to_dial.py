"""Click-to-dial (issue #5 "Callback and click-to-dial"): POST .../users/{id}/calls rings the
user's own phone first (a sipp phone registered with API-generated credentials); when they
answer, the call goes out on the trunk like one their phone placed, and the carrier's sipp
far end sees the user's presented number. A barred target is refused before anything rings;
a user who does not answer leaves the target un-dialled.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import CallOutcome, PhoneKind, SippFarEnd, SippPhone
from ringwise_dev.testing import register_until

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helpers are beside us
import test_outbound_calls as outbound

# This copy of the module counts phone ports on its own: start past the ones its tests use.
outbound._ports = itertools.count(200)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def far_end(platform: LocalPlatform) -> AsyncIterator[SippFarEnd]:
    carrier = await platform.sipp.start_far_end(platform.ports.pstn_far_end, ring_ms=300)
    yield carrier
    await carrier.stop()


def calls_path(user: outbound.Phone) -> str:
    return f"{user.t}/users/{user.user_id}/calls"


async def call_state(user: outbound.Phone, call_id: str) -> dict[str, Any]:
    state: dict[str, Any] = await user.tenant.admin.call("GET", f"{calls_path(user)}/{call_id}")
    return state


async def wait_status(user: outbound.Phone, call_id: str, status: str) -> dict[str, Any]:
    for _ in range(300):
        state = await call_state(user, call_id)
        if state["status"] == status:
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"call {call_id} never reached {status!r}: {state}")


async def settled_call(phone: SippPhone, timeout_s: float = 20.0) -> CallOutcome:
    """The phone's one call once it was answered or cancelled (wait_calls returns at the
    INVITE)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        [call] = await phone.wait_calls(1, timeout_s=timeout_s)
        if call.final_code is not None or call.cancelled:
            return call
        assert asyncio.get_running_loop().time() < deadline, f"still ringing: {call}"
        await asyncio.sleep(0.05)


def invites_to(far_end: SippFarEnd, number: str) -> list[dict[str, str]]:
    return [i for i in far_end.invites() if f"sip:{number}@" in i["request-line"]]


async def test_the_users_phone_rings_first_then_the_far_end_sees_their_number(
    platform: LocalPlatform, session: aiohttp.ClientSession, far_end: SippFarEnd
) -> None:
    user = await outbound.provision(platform, session)
    phone = await platform.sipp.start_phone(
        PhoneKind.ANSWER_AND_HANGUP, user.port, ring_ms=1500, hold_ms=4000
    )
    try:
        placed = await user.tenant.admin.call(
            "POST", calls_path(user), {"to": "+33144550001"}, status=202
        )
        assert placed["status"] == "ringing_user"
        await asyncio.sleep(0.8)  # the user's phone rings (1.5 s): the target must not yet
        assert (await call_state(user, placed["call_id"]))["status"] == "ringing_user"
        assert not invites_to(far_end, "+33144550001")

        invite = await outbound.far_end_invite(far_end, "+33144550001")
        assert outbound.uri_user(invite["from"]) == user.smartnumber
        assert outbound.uri_user(invite["p-asserted-identity"]) == user.smartnumber
        on_phone = await settled_call(phone)
        assert on_phone.answered
        cdr = await outbound.cdr_of(user, "+33144550001")
        assert (cdr["direction"], cdr["from_number"], cdr["disposition"]) == (
            "DIRECTION_OUTBOUND",
            user.smartnumber,
            "DISPOSITION_ANSWERED",
        )
        assert cdr["call_id"] == placed["call_id"] and cdr["billable_ms"] >= 1000
        ended = await wait_status(user, placed["call_id"], "ended")
        assert ended["disposition"] == "answered"
    finally:
        await phone.stop()


async def test_a_barred_target_is_refused_before_anything_rings(
    platform: LocalPlatform, session: aiohttp.ClientSession, far_end: SippFarEnd
) -> None:
    user = await outbound.provision(platform, session)
    phone = await platform.sipp.start_phone(PhoneKind.ANSWER, user.port, ring_ms=300)
    try:
        async with session.post(
            platform.service_url("gateway", calls_path(user)),
            json={"to": "09012345678"},  # premium: barred by default
            headers={"Authorization": f"Bearer {user.tenant.admin.token}"},
        ) as resp:
            assert resp.status == 422
            assert resp.content_type == "application/problem+json"
            problem = await resp.json()
        assert problem["errors"][0]["field"] == "to"
        await asyncio.sleep(2)
        assert phone.calls_handled() == 0
        assert not invites_to(far_end, "+449012345678")
    finally:
        await phone.stop()


async def test_a_user_who_does_not_answer_leaves_the_target_undialled(
    platform: LocalPlatform, session: aiohttp.ClientSession, far_end: SippFarEnd
) -> None:
    user = await outbound.provision(platform, session)
    await user.tenant.admin.call("PATCH", f"{user.t}/users/{user.user_id}", {"ring_timeout_s": 5})
    phone = await platform.sipp.start_phone(PhoneKind.NOANSWER, user.port)
    try:
        # A retried request (same Idempotency-Key) gets the first reply: one call, not two.
        replies = []
        for _ in range(2):
            async with session.post(
                platform.service_url("gateway", calls_path(user)),
                json={"to": "+33144550002"},
                headers={
                    "Authorization": f"Bearer {user.tenant.admin.token}",
                    "Idempotency-Key": f"ctd-{user.user_id}",
                },
            ) as resp:
                assert resp.status == 202
                replies.append(await resp.json())
        placed = replies[0]
        assert replies[1]["call_id"] == placed["call_id"]
        state = await wait_status(user, placed["call_id"], "not answered")
        assert state["disposition"] is None
        on_phone = await settled_call(phone)  # rang once, then CANCEL
        assert on_phone.cancelled and not on_phone.answered
        assert phone.calls_handled() == 1
        await asyncio.sleep(1)
        assert not invites_to(far_end, "+33144550002")
        page = await platform.get_json("billing", "/v1/cdrs?limit=1000")
        assert not [c for c in page["items"] if c["call_id"] == placed["call_id"]]
    finally:
        await phone.stop()


async def test_an_extension_target_rings_that_user_once_the_caller_answered(
    platform: LocalPlatform, session: aiohttp.ClientSession
) -> None:
    user = await outbound.provision(platform, session)
    admin, t = user.tenant.admin, user.t
    colleague = await admin.call(
        "POST",
        f"{t}/users",
        {"email": f"cara@{user.tenant.tenant_id}.example", "name": "Cara", "extension": "207"},
        status=201,
    )
    device = await admin.call(
        "POST",
        f"{t}/users/{colleague['user_id']}/devices",
        {"kind": "sip_phone", "label": "Desk"},
        status=201,
    )
    colleague_port = platform.ports.phones + 100 + 2 * next(outbound._ports)
    await register_until(
        platform, device["sip_username"], device["sip_password"], colleague_port, registered=True
    )
    phone = await platform.sipp.start_phone(
        PhoneKind.ANSWER_AND_HANGUP, user.port, ring_ms=300, hold_ms=4000
    )
    colleagues_phone = await platform.sipp.start_phone(
        PhoneKind.ANSWER, colleague_port, ring_ms=300
    )
    try:
        async with session.post(
            platform.service_url("gateway", calls_path(user)),
            json={"to": "208"},  # nobody's extension
            headers={"Authorization": f"Bearer {admin.token}"},
        ) as resp:
            assert resp.status == 422
        placed = await admin.call("POST", calls_path(user), {"to": "207"}, status=202)
        state = await wait_status(user, placed["call_id"], "internal")
        assert (await settled_call(phone)).answered
        assert (await settled_call(colleagues_phone)).answered
        for _ in range(100):
            page = await platform.get_json("billing", "/v1/cdrs?limit=1000")
            found = [c for c in page["items"] if c["call_id"] == state["internal_call_id"]]
            if found:
                break
            await asyncio.sleep(0.2)
        [cdr] = found
        assert (cdr["direction"], cdr["disposition"]) == (
            "DIRECTION_INTERNAL",
            "DISPOSITION_ANSWERED",
        )
    finally:
        await phone.stop()
        await colleagues_phone.stop()
