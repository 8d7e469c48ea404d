"""Routing profiles and the tenant routing policy through the real gateway: who may read and
change whose routing, If-Match, the 4xx answers to configuration that would not work, the
write-only secrets, explain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient
from ringwise_dev.gateway_client import NEW_PASSWORD, GatewayClient, Tenant, new_tenant
from ringwise_dev.platform import LocalPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

# 12 digits (the longest allowed): a short secret turns up by chance in the shared service
# logs (the outbound tests' numbers are made from the clock: "+442078642010" holds "86420").
PIN = "918273645546"
CALL_PASSWORD = "827364554619"


@dataclass
class Reply:
    status: int
    body: Any
    etag: str


async def send(
    client: GatewayClient,
    method: str,
    path: str,
    body: Any = None,
    *,
    if_match: str = "",
) -> Reply:
    """One call with the ETag and If-Match headers (GatewayClient.call shows neither)."""
    headers = {"Authorization": f"Bearer {client.token}"}
    if if_match:
        headers["If-Match"] = if_match
    async with client.session.request(
        method, client.base + path, json=body, headers=headers
    ) as resp:
        text = await resp.text()
        return Reply(resp.status, json.loads(text) if text else None, resp.headers.get("ETag", ""))


async def new_member(
    platform: LocalPlatform,
    tenant: Tenant,
    name: str,
    role: str = "user",
    devices: int = 1,
) -> tuple[str, GatewayClient, list[str]]:
    """A user of the tenant with SIP phones, signed in with their own client."""
    t = f"/v1/tenants/{tenant.tenant_id}"
    email = f"{name}@{tenant.tenant_id}.example"
    user = await tenant.admin.call(
        "POST", f"{t}/users", {"email": email, "name": name.title(), "role": role}, status=201
    )
    device_ids = []
    for _ in range(devices):
        phone = await tenant.admin.call(
            "POST", f"{t}/users/{user['user_id']}/devices", {"kind": "sip_phone"}, status=201
        )
        device_ids.append(phone["device_id"])
    own = GatewayClient(tenant.admin.session, platform.service_url("gateway"))
    await own.login(email, user["temporary_password"], NEW_PASSWORD)
    return user["user_id"], own, device_ids


def profile(device_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "terminals": [
            {"id": "desk", "location": "Desk", "device_id": device_id, "ring_timeout_s": 15},
            {"id": "mobile", "location": "Mobile", "number": "+447700900123"},
        ],
        "states": {
            "Available": {"terminals": ["desk", "mobile"], "ring_mode": "sequential"},
            "Busy": {},
            "Travelling": {"terminals": ["mobile"]},
            "Holiday": {},
        },
        **extra,
    }


def fields(problem: dict[str, Any]) -> list[str]:
    return [e["field"] for e in problem.get("errors", [])]


async def test_a_user_edits_their_own_routing_and_an_admin_anyones(
    platform: LocalPlatform, session: aiohttp.ClientSession
) -> None:
    tenant = await new_tenant(platform, session)
    t = f"/v1/tenants/{tenant.tenant_id}"
    alice, alice_client, (alice_desk,) = await new_member(platform, tenant, "alice")
    bob, _, (bob_desk,) = await new_member(platform, tenant, "bob")
    _, sam_client, _ = await new_member(platform, tenant, "sam", role="supervisor", devices=0)

    # No profile yet: the default (every device together in Available), ETag "0".
    first = await send(alice_client, "GET", f"{t}/users/{alice}/routing")
    assert first.status == 200, first.body
    assert first.etag == '"0"' and first.body["stored"] is False
    assert [(x["device_id"], x["status"]) for x in first.body["terminals"]] == [
        (alice_desk, "active")
    ]
    assert first.body["states"]["Available"]["ring_mode"] == "simultaneous"

    stored = await send(
        alice_client, "PUT", f"{t}/users/{alice}/routing", profile(alice_desk), if_match='"0"'
    )
    assert stored.status == 200, stored.body
    assert stored.etag == '"1"' and stored.body["stored"] is True
    # The mobile number is rung through the PSTN trunk; without one it is "blocked".
    trunk = platform.service_env("routing").get("RINGWISE_PSTN_TRUNK_ADDRESS")
    assert stored.body["terminals"] == [
        {
            "id": "desk",
            "location": "Desk",
            "device_id": alice_desk,
            "ring_timeout_s": 15,
            "status": "active",
        },
        {
            "id": "mobile",
            "location": "Mobile",
            "number": "+447700900123",
            "ring_timeout_s": 20,
            "status": "active" if trunk else "blocked",
        },
    ]
    # A stale If-Match (the ETag of the default) is refused.
    stale = await send(
        alice_client, "PUT", f"{t}/users/{alice}/routing", profile(alice_desk), if_match='"0"'
    )
    assert stale.status == 412 and stale.body["status"] == 412

    # Another user's routing is as if it did not exist for a user; a supervisor and an admin
    # may change anyone's.
    for method, path, body in (
        ("GET", f"{t}/users/{bob}/routing", None),
        ("PUT", f"{t}/users/{bob}/routing", profile(bob_desk)),
        ("PUT", f"{t}/users/{bob}/routing/availability", {"state": "Busy"}),
        ("GET", f"{t}/users/{bob}/routing/explain", None),
    ):
        refused = await send(alice_client, method, path, body)
        assert refused.status == 404, (method, path, refused.body)
    by_supervisor = await send(sam_client, "PUT", f"{t}/users/{bob}/routing", profile(bob_desk))
    assert by_supervisor.status == 200, by_supervisor.body
    by_admin = await send(tenant.admin, "GET", f"{t}/users/{alice}/routing")
    assert by_admin.status == 200 and by_admin.etag == '"1"'

    # The policy is the admin's; a supervisor may read it.
    assert (await send(alice_client, "GET", f"{t}/routing-policy")).status == 403
    assert (await send(sam_client, "GET", f"{t}/routing-policy")).status == 200
    assert (await send(sam_client, "PUT", f"{t}/routing-policy", {})).status == 403


async def test_another_tenant_and_unknown_users_answer_404(
    platform: LocalPlatform, session: aiohttp.ClientSession
) -> None:
    tenant = await new_tenant(platform, session)
    other = await new_tenant(platform, session)
    t = f"/v1/tenants/{tenant.tenant_id}"
    alice, _, (desk,) = await new_member(platform, tenant, "alice")
    await tenant.admin.call("PUT", f"{t}/users/{alice}/routing", profile(desk))

    for method, path, body in (
        ("GET", f"{t}/users/{alice}/routing", None),
        ("PUT", f"{t}/users/{alice}/routing", profile(desk)),
        ("GET", f"{t}/users/{alice}/routing/explain", None),
        ("GET", f"{t}/routing-policy", None),
    ):
        reply = await send(other.admin, method, path, body)
        assert reply.status == 404, (method, path, reply.body)
    # The other tenant's admin sees their own (default) policy, not ours.
    theirs = await send(other.admin, "GET", f"/v1/tenants/{other.tenant_id}/users/{alice}/routing")
    assert theirs.status == 404  # alice is no user of theirs
    missing = await send(tenant.admin, "GET", f"{t}/users/nobody-here/routing")
    assert missing.status == 404 and missing.body["detail"] == "no such user"


async def test_configuration_that_would_not_work_is_refused_field_by_field(
    platform: LocalPlatform, session: aiohttp.ClientSession
) -> None:
    tenant = await new_tenant(platform, session)
    t = f"/v1/tenants/{tenant.tenant_id}"
    alice, _, (desk,) = await new_member(platform, tenant, "alice")
    bob, _, (bob_desk,) = await new_member(platform, tenant, "bob")
    admin = tenant.admin

    unknown_device = await send(admin, "PUT", f"{t}/users/{alice}/routing", profile(bob_desk))
    assert unknown_device.status == 422
    assert fields(unknown_device.body) == ["terminals[0].device_id"]

    six = profile(desk)
    six["terminals"] = [{"id": f"t{i}", "number": f"+4477009001{i:02d}"} for i in range(6)]
    too_many = await send(admin, "PUT", f"{t}/users/{alice}/routing", six)
    assert too_many.status == 422 and too_many.body["errors"]

    broken = profile(desk, default_state="Lunch", delegates=[alice])
    broken["states"]["Available"]["terminals"] = ["desk", "nowhere"]
    refused = await send(admin, "PUT", f"{t}/users/{alice}/routing", broken)
    assert refused.status == 422
    assert sorted(fields(refused.body)) == [
        "default_state",
        "delegates",
        "states.Available.terminal_ids",
    ]

    def delegating(device: str, target: str) -> dict[str, Any]:
        return profile(
            device,
            states={
                "Available": {"terminals": ["desk"]},
                "Busy": {"fallback": {"kind": "delegate", "target": target}},
                "Travelling": {},
                "Holiday": {},
            },
        )

    assert (
        await send(admin, "PUT", f"{t}/users/{alice}/routing", delegating(desk, bob))
    ).status == 200
    loop = await send(admin, "PUT", f"{t}/users/{bob}/routing", delegating(bob_desk, alice))
    assert loop.status == 422
    assert loop.body["errors"][0]["message"] == f"divert loop: {bob} -> {alice} -> {bob}"

    strangers = profile(desk, delegates=["u_nobody"])
    strangers["states"]["Busy"] = {"fallback": {"kind": "team", "target": "no-team"}}
    unknown = await send(admin, "PUT", f"{t}/users/{alice}/routing", strangers)
    assert unknown.status == 422
    assert unknown.body["errors"] == [
        {"field": "delegates[0]", "message": "no active user u_nobody in this tenant"},
        {"field": "states.Busy.fallback.target", "message": "no team no-team in this tenant"},
    ]

    unknown_state = await send(
        admin, "PUT", f"{t}/users/{alice}/routing/availability", {"state": "Lunch"}
    )
    assert unknown_state.status == 422 and fields(unknown_state.body) == ["state"]
    bad_number = await send(
        admin, "PUT", f"{t}/users/{alice}/routing/location", {"action": "temp", "number": "12"}
    )
    assert bad_number.status == 422 and fields(bad_number.body) == ["number"]
    bad_time = await send(admin, "GET", f"{t}/users/{alice}/routing/explain?at=yesterday")
    assert bad_time.status == 400


async def test_secrets_are_write_only_and_stored_hashed(
    platform: LocalPlatform, session: aiohttp.ClientSession
) -> None:
    tenant = await new_tenant(platform, session)
    t = f"/v1/tenants/{tenant.tenant_id}"
    alice, own, (desk,) = await new_member(platform, tenant, "alice")
    body = profile(
        desk,
        outbound={"international": "pin", "dialling_pin": PIN},
        screening={"enabled": True, "password": CALL_PASSWORD},
    )
    stored = await send(own, "PUT", f"{t}/users/{alice}/routing", body)
    assert stored.status == 200, stored.body
    shown = (await send(own, "GET", f"{t}/users/{alice}/routing")).body
    assert shown["outbound"]["dialling_pin_set"] is True
    assert shown["screening"]["password_set"] is True
    assert PIN not in json.dumps(shown) and CALL_PASSWORD not in json.dumps(shown)

    # Sent back without the secrets: they are kept.
    again = await send(own, "PUT", f"{t}/users/{alice}/routing", shown)
    assert again.status == 200 and again.body["outbound"]["dialling_pin_set"] is True
    short = profile(desk, outbound={"dialling_pin": "12"})
    refused = await send(own, "PUT", f"{t}/users/{alice}/routing", short)
    assert refused.status == 422 and fields(refused.body) == ["outbound.dialling_pin"]

    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(platform.infra.endpoints.mongo_url)
    try:
        record = await mongo["ringwise_routing"]["profiles"].find_one(
            {"tenant_id": tenant.tenant_id, "user_id": alice}
        )
    finally:
        await mongo.close()
    assert record is not None
    assert (record["origin"], record["actor"]) == ("api", alice)  # who changed it, for audit
    assert record["doc"]["outbound"]["dialling_pin_hash"].startswith("$argon2id$")
    assert PIN not in json.dumps(record, default=str)
    for service in ("routing", "gateway"):
        log = (platform.data_dir / "logs" / f"{service}.log").read_text(errors="replace")
        assert PIN not in log and CALL_PASSWORD not in log


async def test_availability_location_and_explain(
    platform: LocalPlatform, session: aiohttp.ClientSession
) -> None:
    tenant = await new_tenant(platform, session)
    t = f"/v1/tenants/{tenant.tenant_id}"
    alice, own, (desk,) = await new_member(platform, tenant, "alice")
    routing = f"{t}/users/{alice}/routing"
    vip = "+441632960333"
    await own.call("PUT", routing, profile(desk, vip_numbers=[vip]))

    holiday = await send(
        own, "PUT", f"{routing}/availability", {"state": "Holiday"}, if_match='"1"'
    )
    assert holiday.status == 200 and holiday.etag == '"2"'
    assert holiday.body["manual"] == {"state": "Holiday", "until": None}
    plan = await own.call("GET", f"{routing}/explain?caller=%2B441632960555")
    assert plan["state"] == "Holiday" and plan["ends_in"] == "voicemail"
    assert plan["steps"] == [
        {
            "type": "voicemail",
            "mailbox": alice,
            "greeting": "holiday",
            "delegate_breakout": None,
        }
    ]
    # A VIP rings Available's terminals even on Holiday.
    vip_plan = await own.call("GET", f"{routing}/explain?caller=%2B441632960333")
    assert [r["code"] for r in vip_plan["reasons"]][:3] == [
        "state.manual",
        "caller.vip",
        "vip.bypass",
    ]
    (ring,) = [s for s in vip_plan["steps"] if s["type"] == "ring"]
    # The mobile number is rung through the PSTN trunk; without one it is skipped.
    trunk = platform.service_env("routing").get("RINGWISE_PSTN_TRUNK_ADDRESS")
    expected = ["desk", "mobile"] if trunk else ["desk"]
    assert [leg["terminal_id"] for leg in ring["legs"]] == expected
    assert all(set(leg) == {"terminal_id", "location", "timeout_s"} for leg in ring["legs"])

    # A hand-chosen state with an end: after it the default applies again.
    until = await send(
        own,
        "PUT",
        f"{routing}/availability",
        {"state": "Busy", "until": "2030-01-01T00:00:00Z"},
    )
    assert until.status == 200
    before = await own.call("GET", f"{routing}/explain?at=2029-12-31T23:00:00Z")
    after = await own.call("GET", f"{routing}/explain?at=2030-01-01T01:00:00Z")
    assert (before["state"], after["state"]) == ("Busy", "Available")
    back = await own.call("DELETE", f"{routing}/availability")
    assert back["manual"] is None

    temp = await own.call(
        "PUT", f"{routing}/location", {"action": "temp", "number": "+447700900999"}
    )
    assert temp["terminals"][-1]["number"] == "+447700900999"
    assert temp["states"]["Available"]["terminals"][0] == "t-temp"
    logged_out = await own.call("PUT", f"{routing}/location", {"action": "log_out"})
    assert logged_out["logged_out"] is True
    plan = await own.call("GET", f"{routing}/explain?caller=%2B441632960333")
    assert plan["ends_in"] == "voicemail"
    assert "location.none" in [r["code"] for r in plan["reasons"]]
    await own.call("PUT", f"{routing}/location", {"action": "log_in"})
    cleared = await own.call("DELETE", f"{routing}/location")
    assert [x["id"] for x in cleared["terminals"]] == ["desk", "mobile"]
    assert cleared["logged_out"] is False

    removed = await send(own, "DELETE", routing)
    assert removed.status == 204
    default = await send(own, "GET", routing)
    assert default.body["stored"] is False and default.etag == '"9"'


async def test_explain_treats_a_colleague_by_extension_as_an_internal_caller(
    platform: LocalPlatform, session: aiohttp.ClientSession
) -> None:
    tenant = await new_tenant(platform, session)
    t = f"/v1/tenants/{tenant.tenant_id}"
    alice, own, (desk,) = await new_member(platform, tenant, "alice")
    bob, _, _ = await new_member(platform, tenant, "bob", devices=0)
    await tenant.admin.call("PATCH", f"{t}/users/{bob}", {"extension": "2301"})
    screened = profile(desk, screening={"enabled": True, "skip_for_internal": True})
    await own.call("PUT", f"{t}/users/{alice}/routing", screened)

    outside = await own.call("GET", f"{t}/users/{alice}/routing/explain?caller=%2B441632960555")
    assert outside["caller"]["user_id"] is None
    assert outside["steps"][0]["type"] == "screen"
    colleague = await own.call("GET", f"{t}/users/{alice}/routing/explain?caller=2301")
    assert colleague["caller"]["user_id"] == bob
    assert colleague["steps"][0]["type"] == "ring"
    assert "screen.skipped" in [r["code"] for r in colleague["reasons"]]
    stranger = await own.call("GET", f"{t}/users/{alice}/routing/explain?caller=2302")
    assert stranger["caller"]["user_id"] is None


async def test_the_tenant_routing_policy(
    platform: LocalPlatform, session: aiohttp.ClientSession
) -> None:
    tenant = await new_tenant(platform, session)
    t = f"/v1/tenants/{tenant.tenant_id}"
    admin = tenant.admin
    alice, _, (desk,) = await new_member(platform, tenant, "alice")

    default = await send(admin, "GET", f"{t}/routing-policy")
    assert default.status == 200 and default.etag == '"0"'
    assert default.body["dialling"]["country_code"] == "+44"
    assert default.body["dialling"]["credit_fail_open"] is False

    policy = {
        "custom_states": ["Meeting"],
        "inbound_filter": {"blocked": ["+44909*"]},
        "dialling": {
            "country_code": "+44",
            "emergency_numbers": ["999", "112"],
            "credit_fail_open": True,
        },
    }
    stored = await send(admin, "PUT", f"{t}/routing-policy", policy, if_match='"0"')
    assert stored.status == 200 and stored.etag == '"1"'
    assert stored.body["dialling"]["emergency_numbers"] == ["112", "999"]
    # The tenant's custom state is now a state a profile may have.
    meeting = profile(desk)
    meeting["states"]["Meeting"] = {"terminals": ["desk"]}
    assert (await send(admin, "PUT", f"{t}/users/{alice}/routing", meeting)).status == 200
    blocked = await admin.call("GET", f"{t}/users/{alice}/routing/explain?caller=%2B449091234567")
    assert blocked["ends_in"] == "reject"
    assert blocked["reasons"][0]["code"] == "caller.blocked.tenant"

    in_use = await send(admin, "PUT", f"{t}/routing-policy", {}, if_match='"1"')
    assert in_use.status == 422
    assert in_use.body["errors"] == [
        {"field": "custom_states", "message": f"Meeting still used by {alice}"}
    ]
    stale = await send(admin, "PUT", f"{t}/routing-policy", policy, if_match='"7"')
    assert stale.status == 412
    bad = await send(admin, "PUT", f"{t}/routing-policy", {"custom_states": ["Busy"]})
    assert bad.status == 422 and fields(bad.body) == ["custom_states"]


async def test_profiles_outlive_a_routing_restart_and_readiness_includes_mongo(
    platform: LocalPlatform, session: aiohttp.ClientSession
) -> None:
    tenant = await new_tenant(platform, session)
    t = f"/v1/tenants/{tenant.tenant_id}"
    alice, own, (desk,) = await new_member(platform, tenant, "alice")
    ready = await platform.get_json("routing", "/readyz")
    assert ready["checks"]["mongo"] is True
    stored = await send(own, "PUT", f"{t}/users/{alice}/routing", profile(desk, logged_out=True))
    assert stored.status == 200

    await platform.restart_service("routing")
    again = await send(own, "GET", f"{t}/users/{alice}/routing")
    assert again.status == 200 and again.etag == stored.etag
    assert again.body == stored.body
    after = await send(
        own, "PUT", f"{t}/users/{alice}/routing/location", {"action": "log_in"}, if_match='"1"'
    )
    assert after.status == 200 and after.etag == '"2"' and after.body["logged_out"] is False
