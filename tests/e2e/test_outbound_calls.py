"""Calls placed by users' phones (issue #5 "Outbound", issue #8's credit e2e).

Real gateway, directory, routing, billing and Asterisk: a tenant admin provisions a user with
numbers and a SIP phone through the API; a sipp phone registers with the generated
credentials and places calls (digest-authenticated INVITEs); the carrier's side of the PSTN
trunk is a sipp far end on the trunk address routing dials (RINGWISE_PSTN_TRUNK_ADDRESS),
which keeps every INVITE so the presented caller ID is checked on the wire: From,
P-Asserted-Identity and Privacy.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from ringwise.events.v1 import call_pb2
from ringwise_dev.gateway_client import GatewayClient, Tenant, new_tenant
from ringwise_dev.platform import OPERATOR_EMAIL, LocalPlatform
from ringwise_dev.sipp import PhoneKind, SippFarEnd, SippResult
from ringwise_dev.testing import register_until, stream_events
from ringwise_routing.calls import feature_codes, outbound_call

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

_numbers = itertools.count(1)
_ports = itertools.count(0)
PIN = "4321"


def new_number() -> str:
    """A London number no other test of this run holds (tenants' numbers are global)."""
    return f"+44207{int(time.time()) % 10000:04d}{next(_numbers):03d}"


@dataclass
class Phone:
    """A user of a fresh tenant with a registered desk phone."""

    platform: LocalPlatform
    tenant: Tenant
    user_id: str
    smartnumber: str
    others: list[str]  # further numbers of the user (designated, allowed CLIs)
    username: str
    password: str
    port: int

    @property
    def t(self) -> str:
        return f"/v1/tenants/{self.tenant.tenant_id}"

    async def dial(self, dialled: str, **options: Any) -> SippResult:
        return await self.platform.sipp.place_phone_call(
            self.username, self.password, dialled, local_port=self.port, **options
        )

    async def routing(self) -> dict[str, Any]:
        profile: dict[str, Any] = await self.tenant.admin.call(
            "GET", f"{self.t}/users/{self.user_id}/routing"
        )
        return profile

    async def set_outbound(self, **outbound: Any) -> None:
        profile = await self.routing()
        profile["outbound"] = {
            k: v for k, v in (profile.get("outbound") or {}).items() if k != "dialling_pin_set"
        } | outbound
        await self.tenant.admin.call("PUT", f"{self.t}/users/{self.user_id}/routing", profile)


async def operator_of(platform: LocalPlatform, session: aiohttp.ClientSession) -> GatewayClient:
    operator = GatewayClient(session, platform.service_url("gateway"))
    await operator.login(OPERATOR_EMAIL, platform.operator_password)
    return operator


async def set_up_billing(
    platform: LocalPlatform,
    session: aiohttp.ClientSession,
    tenant: Tenant,
    rates: list[dict[str, str]],
    top_up: str | None,
) -> None:
    """The operator prices the tenant's calls; the admin activates the prepaid account and
    tops it up by bank transfer, which the operator confirms."""
    t = f"/v1/tenants/{tenant.tenant_id}"
    operator = await operator_of(platform, session)
    await operator.call(
        "POST",
        f"{t}/billing/tariffs",
        {
            "version_id": "e2e-outbound",
            "effective_from": "2020-01-01T00:00:00Z",
            "currency": "EUR",
            "outbound": rates,
        },
        status=201,
    )
    await tenant.admin.call(
        "PUT",
        f"{t}/billing/account",
        {"profile": {"company": "Outbound Ltd", "country": "GB"}, "currency": "EUR"},
    )
    if top_up is not None:
        topup = await tenant.admin.call(
            "POST", f"{t}/billing/top-ups", {"amount": top_up}, status=201
        )
        await operator.call("POST", f"{t}/billing/top-ups/{topup['topup_id']}/confirm")


# Everything the tests dial costs 1 cent a minute (60/60).
CHEAP_RATES = [
    {"prefix": prefix, "per_minute": "0.0100", "increment": "60/60"} for prefix in ("+3", "+44")
]


async def provision(
    platform: LocalPlatform, session: aiohttp.ClientSession, *, funded: bool = True
) -> Phone:
    tenant = await new_tenant(platform, session)
    if funded:
        await set_up_billing(platform, session, tenant, CHEAP_RATES, top_up="10.00")
    admin = tenant.admin
    t = f"/v1/tenants/{tenant.tenant_id}"
    user = await admin.call(
        "POST",
        f"{t}/users",
        {"email": f"olly@{tenant.tenant_id}.example", "name": "Olly Outbound"},
        status=201,
    )
    numbers = [new_number() for _ in range(3)]
    for number in numbers:
        await admin.call(
            "POST",
            f"{t}/numbers",
            {"number": number, "assignment": {"type": "user", "id": user["user_id"]}},
            status=201,
        )
        await admin.call("POST", f"{t}/numbers/{number}/activate")
    smartnumber, designated, chosen = numbers
    await admin.call(
        "PATCH",
        f"{t}/users/{user['user_id']}",
        {
            "smartnumber": smartnumber,
            "outbound_numbers": [designated],
            "allowed_clis": [designated, chosen],
        },
    )
    device = await admin.call(
        "POST",
        f"{t}/users/{user['user_id']}/devices",
        {"kind": "sip_phone", "label": "Desk"},
        status=201,
    )
    # Two ports per phone (sipp's own and the registration's), each test its own.
    port = platform.ports.phones + 100 + 2 * next(_ports)
    await register_until(
        platform, device["sip_username"], device["sip_password"], port, registered=True
    )
    return Phone(
        platform,
        tenant,
        user["user_id"],
        smartnumber,
        [designated, chosen],
        device["sip_username"],
        device["sip_password"],
        port,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def phone(platform: LocalPlatform, session: aiohttp.ClientSession) -> Phone:
    return await provision(platform, session)


@pytest_asyncio.fixture(loop_scope="session")
async def far_end(platform: LocalPlatform) -> AsyncIterator[SippFarEnd]:
    carrier = await platform.sipp.start_far_end(platform.ports.pstn_far_end, ring_ms=300)
    yield carrier
    await carrier.stop()


def uri_user(header: str) -> str:
    """The user part of the SIP URI in a From / P-Asserted-Identity header."""
    return header.split("sip:", 1)[1].split("@", 1)[0]


async def far_end_invite(far_end: SippFarEnd, destination: str) -> dict[str, str]:
    for _ in range(50):
        found = [i for i in far_end.invites() if f"sip:{destination}@" in i["request-line"]]
        if found:
            return found[-1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no INVITE for {destination} at the far end: {far_end.invites()}")


async def routed_events(platform: LocalPlatform, tenant_id: str) -> list[call_pb2.CallRouted]:
    return [
        e
        for e in await stream_events(platform)
        if isinstance(e, call_pb2.CallRouted) and e.header.tenant_id == tenant_id
    ]


async def cdr_of(phone: Phone, to_number: str, timeout_s: float = 20.0) -> dict[str, Any]:
    """The CDR of the (one) call from this phone's user to `to_number`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        page = await phone.platform.get_json("billing", "/v1/cdrs?limit=1000")
        found = [
            c
            for c in page["items"]
            if c.get("user_id") == phone.user_id and c["to_number"] == to_number
        ]
        if found:
            [cdr] = found
            return dict(cdr)
        assert asyncio.get_running_loop().time() < deadline, f"no CDR to {to_number}"
        await asyncio.sleep(0.2)


# -- caller ID presentation -------------------------------------------------------------------


async def test_a_call_presents_the_users_smartnumber_by_default(
    phone: Phone, far_end: SippFarEnd
) -> None:
    result = await phone.dial("+33144556677", hold_ms=1000)
    assert result.final_codes() == [200]
    # Ringback (180) from routing at once, then the carrier's early media (183) passed on.
    assert result.calls[0].provisional[-2:] == [180, 183]
    invite = await far_end_invite(far_end, "+33144556677")
    assert uri_user(invite["from"]) == phone.smartnumber
    assert uri_user(invite["p-asserted-identity"]) == phone.smartnumber
    assert "privacy" not in invite
    cdr = await cdr_of(phone, "+33144556677")
    assert (cdr["direction"], cdr["from_number"], cdr["disposition"]) == (
        "DIRECTION_OUTBOUND",
        phone.smartnumber,
        "DISPOSITION_ANSWERED",
    )
    assert cdr["device_id"] and cdr["billable_ms"] >= 900


async def test_a_call_presents_the_number_the_admin_designated(
    phone: Phone, far_end: SippFarEnd
) -> None:
    await phone.set_outbound(cli_choice="designated")
    result = await phone.dial("02079460001", hold_ms=500)
    assert result.final_codes() == [200]
    invite = await far_end_invite(far_end, "+442079460001")
    assert uri_user(invite["from"]) == phone.others[0]
    assert uri_user(invite["p-asserted-identity"]) == phone.others[0]


async def test_a_call_presents_a_number_chosen_from_the_allowed_set(
    phone: Phone, far_end: SippFarEnd
) -> None:
    await phone.set_outbound(cli_choice="chosen", chosen_number=phone.others[1])
    result = await phone.dial("02079460002", hold_ms=500)
    assert result.final_codes() == [200]
    invite = await far_end_invite(far_end, "+442079460002")
    assert uri_user(invite["from"]) == phone.others[1]
    cdr = await cdr_of(phone, "+442079460002")
    assert cdr["from_number"] == phone.others[1]


async def test_a_withheld_call_is_anonymous_with_the_real_number_asserted(
    phone: Phone, far_end: SippFarEnd
) -> None:
    await phone.set_outbound(cli_choice="withheld")
    result = await phone.dial("02079460003", hold_ms=500)
    assert result.final_codes() == [200]
    invite = await far_end_invite(far_end, "+442079460003")
    assert phone.smartnumber not in invite["from"]
    assert "anonymous" in invite["from"].lower()
    assert uri_user(invite["p-asserted-identity"]) == phone.smartnumber
    assert invite["privacy"] == "id"
    # The routing decision says why, in the CallRouted event (reason codes of the plan).
    [routed] = await routed_events(phone.platform, phone.tenant.tenant_id)
    assert list(routed.decision.reason_codes) == ["cli.withheld", "dial.national", "credit.ask"]
    assert list(routed.decision.steps) == [
        "credit fail-closed",
        f"connect national +442079460003 as {phone.smartnumber} withheld",
    ]


# -- dialling controls ------------------------------------------------------------------------


async def test_international_calls_need_the_dialling_pin(phone: Phone, far_end: SippFarEnd) -> None:
    await phone.set_outbound(international="pin", dialling_pin=PIN)
    # Three wrong PINs (typed ahead, each ended by #): refused, the far end never rung.
    refused = await phone.dial("0033155667788", pin="1111#2222#3333#", hold_ms=20000)
    assert refused.calls and refused.calls[0].answered  # answered to collect the PIN...
    assert refused.calls[0].far_end_bye  # ...then hung up by the platform
    assert not [i for i in far_end.invites() if "+33155667788" in i["request-line"]]
    cdr = await cdr_of(phone, "+33155667788")
    assert (cdr["disposition"], cdr["hangup_by"]) == ("DISPOSITION_FAILED", "platform")

    allowed = await phone.dial("0033155667799", pin=f"{PIN}#", hold_ms=4000)
    assert allowed.final_codes() == [200]
    await far_end_invite(far_end, "+33155667799")
    cdr = await cdr_of(phone, "+33155667799")
    assert cdr["disposition"] == "DISPOSITION_ANSWERED"


async def test_premium_numbers_are_barred_with_a_prompt(phone: Phone, far_end: SippFarEnd) -> None:
    result = await phone.dial("09012345678", hold_ms=500)
    assert result.final_codes() == [403]
    assert 183 in result.calls[0].provisional  # the refusal prompt, as early media
    assert not [i for i in far_end.invites() if "+449012345678" in i["request-line"]]


async def test_emergency_calls_always_connect_and_show_the_real_number(
    platform: LocalPlatform, session: aiohttp.ClientSession, far_end: SippFarEnd
) -> None:
    # Withheld, and with no credit at all: the emergency call still goes out at once.
    phone = await provision(platform, session, funded=False)
    await phone.set_outbound(cli_choice="withheld")
    result = await phone.dial("999", hold_ms=500)
    assert result.final_codes() == [200]
    invite = await far_end_invite(far_end, "999")
    assert uri_user(invite["from"]) == phone.smartnumber
    assert "privacy" not in invite


async def test_an_unknown_number_format_is_refused(phone: Phone, far_end: SippFarEnd) -> None:
    result = await phone.dial("+4412", hold_ms=500)
    assert result.final_codes() == [484]


# -- feature codes ----------------------------------------------------------------------------


async def test_feature_codes_change_the_users_routing(phone: Phone) -> None:
    busy = await phone.dial("*22", hold_ms=10000)
    assert busy.final_codes() == [200] and busy.calls[0].far_end_bye
    assert (await phone.routing())["manual"]["state"] == "Busy"

    logged_out = await phone.dial("*40", hold_ms=10000)
    assert logged_out.final_codes() == [200]
    assert (await phone.routing())["logged_out"] is True

    here = await phone.dial("*31", hold_ms=10000)
    assert here.final_codes() == [200]
    profile = await phone.routing()
    assert profile["logged_out"] is False  # setting a location logs in again
    temp = [t for t in profile["terminals"] if t["location"] == "Temp"]
    assert len(temp) == 1 and temp[0].get("device_id")

    schedule = await phone.dial("*20", hold_ms=10000)
    assert schedule.final_codes() == [200]
    assert (await phone.routing())["manual"] is None

    unknown = await phone.dial("*99", hold_ms=10000)
    assert unknown.final_codes() == [200] and unknown.calls[0].far_end_bye


async def test_a_phone_the_directory_does_not_know_is_refused_with_a_prompt(
    platform: LocalPlatform, far_end: SippFarEnd
) -> None:
    # A PJSIP endpoint Asterisk has but no directory device stands for (e.g. left over
    # from a device deleted while routing was away): its calls reach routing, which refuses.
    asterisk = platform.asterisk
    name, password = f"ghost{int(time.time())}", "ghost-password-1"
    objects = {
        "auth": {"auth_type": "userpass", "username": name, "password": password},
        "aor": {"max_contacts": "1"},
        "endpoint": {
            "transport": "transport-udp",
            "context": "from-phones",
            "disallow": "all",
            "allow": "ulaw",
            "aors": name,
            "auth": name,
        },
    }
    async with aiohttp.ClientSession(headers=asterisk.ari_auth_headers()) as client:
        for kind, fields in objects.items():
            body = {"fields": [{"attribute": k, "value": v} for k, v in fields.items()]}
            async with client.put(
                f"{asterisk.ari_url}/ari/asterisk/config/dynamic/res_pjsip/{kind}/{name}",
                json=body,
            ) as resp:
                assert resp.status == 200, await resp.text()
        try:
            port = platform.ports.phones + 100 + 2 * next(_ports)
            result = await platform.sipp.place_phone_call(
                name, password, "+33144556600", local_port=port, hold_ms=500
            )
        finally:
            for kind in reversed(objects):
                async with client.delete(
                    f"{asterisk.ari_url}/ari/asterisk/config/dynamic/res_pjsip/{kind}/{name}"
                ):
                    pass
    assert result.final_codes() == [403]
    assert 183 in result.calls[0].provisional  # "not in service", as early media
    assert not [i for i in far_end.invites() if "+33144556600" in i["request-line"]]


# -- extensions -------------------------------------------------------------------------------


async def test_dialling_a_colleagues_extension_rings_their_phone(
    platform: LocalPlatform, phone: Phone
) -> None:
    admin = phone.tenant.admin
    colleague = await admin.call(
        "POST",
        f"{phone.t}/users",
        {
            "email": f"cleo@{phone.tenant.tenant_id}.example",
            "name": "Cleo Colleague",
            "extension": "2042",
        },
        status=201,
    )
    device = await admin.call(
        "POST",
        f"{phone.t}/users/{colleague['user_id']}/devices",
        {"kind": "sip_phone", "label": "Desk"},
        status=201,
    )
    port = platform.ports.phones + 100 + 2 * next(_ports)
    answering = await platform.sipp.start_phone(PhoneKind.ANSWER, port, ring_ms=300)
    try:
        await register_until(
            platform, device["sip_username"], device["sip_password"], port, registered=True
        )
        result = await phone.dial("2042", hold_ms=1000)
        assert result.final_codes() == [200]
        [rung] = await answering.wait_calls(1)
        assert rung.answered
    finally:
        await answering.stop()
    # Handed to the internal-call executor: an INTERNAL call of the two users.
    for _ in range(100):
        page = await platform.get_json("billing", "/v1/cdrs?limit=1000")
        found = [c for c in page["items"] if c.get("user_id") == colleague["user_id"]]
        if found:
            break
        await asyncio.sleep(0.2)
    [cdr] = found
    assert (cdr["direction"], cdr["disposition"], cdr["device_id"]) == (
        "DIRECTION_INTERNAL",
        "DISPOSITION_ANSWERED",
        device["device_id"],
    )


async def test_an_extension_nobody_has_is_refused(phone: Phone, far_end: SippFarEnd) -> None:
    result = await phone.dial("2999", hold_ms=500)
    assert result.final_codes() == [404]
    assert 183 in result.calls[0].provisional


# -- credit (issue #8) ------------------------------------------------------------------------


async def test_a_chargeable_call_is_refused_at_zero_balance_connects_after_a_top_up_and_is_cut(
    platform: LocalPlatform, far_end: SippFarEnd, session: aiohttp.ClientSession
) -> None:
    phone = await provision(platform, session, funded=False)
    admin = phone.tenant.admin
    # London costs 0.60 a minute, by the second: 0.01 a second. The account starts at 0.
    await set_up_billing(
        platform,
        session,
        phone.tenant,
        [{"prefix": "+4420", "per_minute": "0.6000", "increment": "1/1"}],
        top_up=None,
    )

    # Balance 0: refused with billing's prompt (early media), the far end never rung.
    refused = await phone.dial("02079460100", hold_ms=500)
    assert refused.final_codes() == [403]
    assert 183 in refused.calls[0].provisional
    assert not [i for i in far_end.invites() if "+442079460100" in i["request-line"]]
    cdr = await cdr_of(phone, "+442079460100")
    assert (cdr["disposition"], cdr["billable_ms"]) == ("DISPOSITION_FAILED", 0)

    # A top-up of 0.04 through the API (bank transfer, confirmed by the operator): 4 s.
    operator = await operator_of(platform, session)
    topup = await admin.call("POST", f"{phone.t}/billing/top-ups", {"amount": "0.04"}, status=201)
    await operator.call("POST", f"{phone.t}/billing/top-ups/{topup['topup_id']}/confirm")

    # Now it connects, and routing cuts it when the 4 authorised seconds run out, though
    # the phone would have talked for 20.
    started = time.monotonic()
    cut = await phone.dial("02079460101", hold_ms=20000, timeout_s=40)
    assert cut.final_codes() == [200]
    assert cut.calls[0].far_end_bye and not cut.calls[0].sent_bye
    assert time.monotonic() - started < 15
    invite = await far_end_invite(far_end, "+442079460101")
    # The carrier saw one clean dialog: no mid-call re-INVITE (the warning tone joining the
    # bridge changes nothing it sees), and the BYE when the time ran out.
    [carrier] = [c for c in far_end.calls() if c.call_id == invite["call-id"]]
    assert carrier.answered and carrier.far_end_bye
    received = far_end.short_messages.read_text().splitlines()
    invites = [m for m in received if f"\tR\t{carrier.call_id}\t" in m and "\tINVITE " in m]
    assert len(invites) == 1, invites
    cdr = await cdr_of(phone, "+442079460101")
    assert (cdr["disposition"], cdr["hangup_by"]) == ("DISPOSITION_ANSWERED", "platform")
    # Cut just inside the 4 s granted: billing rounds started seconds up, to exactly 4.
    assert 3500 <= int(cdr["billable_ms"]) <= 4000

    # Rated at 4 s, the balance is spent exactly: the next call is refused again.
    for _ in range(50):
        account = await admin.call("GET", f"{phone.t}/billing/account")
        if Decimal(account["balance"]) == 0:
            break
        await asyncio.sleep(0.1)
    assert Decimal(account["balance"]) == 0 and account["blocked"] is True


async def test_a_phone_giving_up_while_it_rings_cancels_the_far_end_and_frees_the_funds(
    platform: LocalPlatform, phone: Phone
) -> None:
    slow = await platform.sipp.start_far_end(platform.ports.pstn_far_end, ring_ms=30000)
    try:
        result = await phone.dial("02079460400", cancel_after_ms=2000)
        # Only INVITEs count: a late request of an earlier call may reach this port too.
        [far] = [c for c in await slow.wait_calls(1) if c.invite_at is not None]
    finally:
        await slow.stop()
    assert result.final_codes() == [487]
    assert far.cancelled and not far.answered
    cdr = await cdr_of(phone, "+442079460400")
    assert (cdr["disposition"], cdr["hangup_by"], cdr["billable_ms"]) == (
        "DISPOSITION_CANCELLED",
        "caller",
        0,
    )
    # The funds held for the call went back at once (not when the reservation expired).
    account = await phone.tenant.admin.call("GET", f"{phone.t}/billing/account")
    assert Decimal(account["reserved"]) == 0
    assert Decimal(account["available"]) == Decimal(account["balance"])


async def test_with_billing_down_the_tenants_policy_decides_fail_closed_or_open(
    platform: LocalPlatform, phone: Phone, far_end: SippFarEnd
) -> None:
    billing = platform.services["billing"]
    await billing.stop()
    try:
        # Fail closed (the default): refused with "try again later", nothing dialled.
        closed = await phone.dial("02079460200", hold_ms=500)
        assert closed.final_codes() == [403]
        assert 183 in closed.calls[0].provisional
        assert not [i for i in far_end.invites() if "+442079460200" in i["request-line"]]

        # The tenant's routing policy says fail open: the call goes out unrated for now.
        await phone.tenant.admin.call(
            "PUT", f"{phone.t}/routing-policy", {"dialling": {"credit_fail_open": True}}
        )
        opened = await phone.dial("02079460201", hold_ms=1000)
        assert opened.final_codes() == [200]
        await far_end_invite(far_end, "+442079460201")
    finally:
        await billing.start_and_wait()
    # Billing stores (and rates) the CDR once it is back: nothing is lost.
    cdr = await cdr_of(phone, "+442079460201")
    assert (cdr["disposition"], cdr["from_number"]) == ("DISPOSITION_ANSWERED", phone.smartnumber)


async def test_a_bridged_outbound_call_survives_a_routing_crash_and_is_still_billed(
    platform: LocalPlatform, phone: Phone, far_end: SippFarEnd
) -> None:
    # The phone talks for 20 s: long enough for routing to be back (and adopt the call)
    # before it hangs up, even on a loaded machine.
    call = asyncio.create_task(phone.dial("02079460300", hold_ms=20000, timeout_s=50))
    await far_end_invite(far_end, "+442079460300")
    await asyncio.sleep(2)  # answered (ring 0.3 s) and bridged
    platform.services["routing"].kill()  # a crash: nothing is handed over
    await platform.services["routing"].start_and_wait()
    result = await call
    assert result.final_codes() == [200]
    assert result.calls[0].sent_bye  # the phone ended the conversation, as it meant to
    cdr = await cdr_of(phone, "+442079460300")
    assert (cdr["direction"], cdr["disposition"], cdr["from_number"]) == (
        "DIRECTION_OUTBOUND",
        "DISPOSITION_ANSWERED",
        phone.smartnumber,
    )
    assert 19000 <= int(cdr["billable_ms"]) <= 21000


# -- prompts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    sorted(
        {p for group in (*outbound_call.ALL_PROMPTS, *feature_codes.ALL_PROMPTS) for p in group}
    ),
)
async def test_each_outbound_prompt_is_a_sound_the_platform_has(
    platform: LocalPlatform, prompt: str
) -> None:
    asterisk = platform.asterisk
    async with (
        aiohttp.ClientSession(headers=asterisk.ari_auth_headers()) as client,
        client.get(f"{asterisk.ari_url}/ari/sounds", params={"lang": "en"}) as resp,
    ):
        assert resp.status == 200
        sounds = {sound["id"] for sound in await resp.json()}
    kind, name = prompt.split(":", 1)
    assert kind == "sound" and name in sounds, f"Asterisk has no English sound {name}"
