"""resolve_user and resolve_team over NATS, and the fuller resolve_number reply (the user's
numbers and extension, external devices' numbers), against real Mongo-wire and NATS."""

from __future__ import annotations

from typing import Any

import pytest
from directory_harness import Harness
from ringwise.api.v1 import api_pb2
from ringwise.directory.v1 import resolve_pb2
from ringwise_kit import bus, subjects

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
ADMIN = api_pb2.ROLE_TENANT_ADMIN
Found = resolve_pb2.ResolveNumberReply


async def resolve_number(harness: Harness, number: str) -> resolve_pb2.ResolveNumberReply:
    return await bus.request(
        harness.nc,
        subjects.DIRECTORY_RESOLVE_NUMBER,
        resolve_pb2.ResolveNumberRequest(number=number),
        resolve_pb2.ResolveNumberReply,
    )


async def resolve_user(harness: Harness, **key: str) -> resolve_pb2.ResolveNumberReply:
    return await bus.request(
        harness.nc,
        subjects.DIRECTORY_RESOLVE_USER,
        resolve_pb2.ResolveUserRequest(**key),
        resolve_pb2.ResolveNumberReply,
    )


async def resolve_team(harness: Harness, **key: str) -> resolve_pb2.ResolveTeamReply:
    return await bus.request(
        harness.nc,
        subjects.DIRECTORY_RESOLVE_TEAM,
        resolve_pb2.ResolveTeamRequest(**key),
        resolve_pb2.ResolveTeamReply,
    )


def summary(reply: resolve_pb2.ResolveNumberReply) -> dict[str, Any]:
    return {
        "status": reply.status,
        "tenant_id": reply.tenant_id,
        "user_id": reply.user_id,
        "user_name": reply.user_name,
        "smartnumber": reply.smartnumber,
        "extension": reply.extension,
        "outbound_numbers": list(reply.outbound_numbers),
        "allowed_clis": list(reply.allowed_clis),
        "devices": [(d.device_id, d.kind, d.dial_string, d.number) for d in reply.devices],
    }


async def active_number(admin: Any, number: str, user_id: str | None = None) -> None:
    body: dict[str, Any] = {"number": number}
    if user_id:
        body["assignment"] = {"type": "user", "id": user_id}
    assert (await admin.op("reserveNumber", body)).status == 201
    assert (await admin.op("activateNumber", number=number)).status == 200


async def test_every_way_of_reaching_a_user_gives_the_same_full_answer(harness: Harness) -> None:
    tenant = await harness.new_tenant("res-user")
    admin = harness.client(ADMIN, tenant)
    await active_number(admin, "+442071110001")
    await active_number(admin, "+442071110002")
    user = await harness.new_user(
        tenant,
        "rita@res.example",
        extension="201",
        smartnumber="+442071110001",
        outbound_numbers=["+442071110002"],
        allowed_clis=["+442071110001", "+442071110002"],
    )
    user_id = user["user_id"]
    assign = {"assignment": {"type": "user", "id": user_id}}
    assert (await admin.op("updateNumber", assign, number="+442071110001")).status == 200
    desk = (
        await admin.op("createDevice", {"kind": "sip_phone", "label": "Desk"}, user_id=user_id)
    ).body
    mobile = (
        await admin.op(
            "createDevice",
            {"kind": "external", "label": "Mobile", "number": "+447700900555"},
            user_id=user_id,
        )
    ).body
    expected = {
        "status": Found.STATUS_FOUND,
        "tenant_id": tenant,
        "user_id": user_id,
        "user_name": "rita",
        "smartnumber": "+442071110001",
        "extension": "201",
        "outbound_numbers": ["+442071110002"],
        "allowed_clis": ["+442071110001", "+442071110002"],
        "devices": [
            (desk["device_id"], "sip", f"PJSIP/{desk['sip_username']}", ""),
            # External devices: their number, no dial string (routing uses its PSTN trunk).
            (mobile["device_id"], "external", "", "+447700900555"),
        ],
    }

    by_number = await resolve_number(harness, "+442071110001")
    by_id = await resolve_user(harness, tenant_id=tenant, user_id=user_id)
    by_extension = await resolve_user(harness, tenant_id=tenant, extension="201")
    by_sip = await resolve_user(harness, sip_username=desk["sip_username"])
    for reply in (by_number, by_id, by_extension, by_sip):
        assert summary(reply) == expected
    # Only the device lookup names the device that asked.
    assert (by_id.device_id, by_extension.device_id, by_number.device_id) == ("", "", "")
    assert by_sip.device_id == desk["device_id"]
    assert by_id.version == by_extension.version > 0
    # With a tenant given, the SIP user name must belong to that tenant.
    assert (
        await resolve_user(harness, tenant_id=tenant, sip_username=desk["sip_username"])
    ).status == Found.STATUS_FOUND
    other = await harness.new_tenant("res-user-other")
    assert (
        await resolve_user(harness, tenant_id=other, sip_username=desk["sip_username"])
    ).status == Found.STATUS_NOT_FOUND

    # Changing the numbers a user presents is a change routing's cached answers must hear of.
    await active_number(admin, "+442071110003")
    version_before = (await resolve_number(harness, "+442071110001")).version
    changed = await admin.op(
        "updateUser",
        {
            "outbound_numbers": ["+442071110003"],
            "allowed_clis": ["+442071110001", "+442071110003"],
        },
        user_id=user_id,
    )
    assert changed.status == 200, changed.body
    after = await resolve_number(harness, "+442071110001")
    assert list(after.outbound_numbers) == ["+442071110003"]
    assert after.version > version_before


async def test_unknown_suspended_or_inactive_tenant_users_are_not_found(harness: Harness) -> None:
    tenant = await harness.new_tenant("res-missing")
    admin = harness.client(ADMIN, tenant)
    user = await harness.new_user(tenant, "sam@res.example", extension="301")
    phone = (await admin.op("createDevice", {"kind": "sip_phone"}, user_id=user["user_id"])).body
    not_found = Found.STATUS_NOT_FOUND
    for key in (
        {"tenant_id": tenant, "user_id": "u_nobody"},
        {"tenant_id": tenant, "extension": "999"},
        {"sip_username": "rwnosuchphone"},
        {"tenant_id": "", "user_id": user["user_id"]},  # user ids need their tenant
        {"tenant_id": "res-elsewhere", "user_id": user["user_id"]},
        {"tenant_id": tenant},  # no key at all
        {"tenant_id": tenant, "extension": ""},
        {"sip_username": ""},
    ):
        assert (await resolve_user(harness, **key)).status == not_found, key
    keys = (
        {"tenant_id": tenant, "user_id": user["user_id"]},
        {"tenant_id": tenant, "extension": "301"},
        {"sip_username": phone["sip_username"]},
    )
    for key in keys:
        assert (await resolve_user(harness, **key)).status == Found.STATUS_FOUND

    await admin.op("updateUser", {"status": "suspended"}, user_id=user["user_id"])
    for key in keys:
        assert (await resolve_user(harness, **key)).status == not_found, key
    await admin.op("updateUser", {"status": "active"}, user_id=user["user_id"])
    await harness.operator.op("suspendTenant", tenant_id=tenant)
    for key in keys:
        assert (await resolve_user(harness, **key)).status == not_found, key
    await harness.operator.op("activateTenant", tenant_id=tenant)
    assert (await resolve_user(harness, **keys[2])).status == Found.STATUS_FOUND


async def test_a_team_resolves_to_its_active_members_in_ring_order(harness: Harness) -> None:
    tenant = await harness.new_tenant("res-team")
    admin = harness.client(ADMIN, tenant)
    ann, bob, cyd = [
        (await harness.new_user(tenant, f"{name}@team.example"))["user_id"]
        for name in ("ann", "bob", "cyd")
    ]
    team = await admin.op(
        "createTeam",
        {
            "name": "Sales",
            "extension": "400",
            "ring_strategy": "sequential",
            "members": [cyd, ann, bob],
        },
    )
    assert team.status == 201, team.body
    team_id = team.body["team_id"]

    by_id = await resolve_team(harness, tenant_id=tenant, team_id=team_id)
    by_extension = await resolve_team(harness, tenant_id=tenant, extension="400")
    for reply in (by_id, by_extension):
        assert (
            reply.status,
            reply.tenant_id,
            reply.team_id,
            reply.name,
            reply.ring_strategy,
            list(reply.member_user_ids),
        ) == (Found.STATUS_FOUND, tenant, team_id, "Sales", "sequential", [cyd, ann, bob])

    # A suspended member drops out of the ring; the order of the rest stays.
    await admin.op("updateUser", {"status": "suspended"}, user_id=ann)
    reply = await resolve_team(harness, tenant_id=tenant, team_id=team_id)
    assert list(reply.member_user_ids) == [cyd, bob]
    await admin.op(
        "updateTeam", {"members": [bob, ann, cyd], "ring_strategy": "random"}, team_id=team_id
    )
    reply = await resolve_team(harness, tenant_id=tenant, extension="400")
    assert (list(reply.member_user_ids), reply.ring_strategy) == ([bob, cyd], "random")

    empty = await admin.op(
        "createTeam", {"name": "Nobody", "extension": "401", "ring_strategy": "simultaneous"}
    )
    reply = await resolve_team(harness, tenant_id=tenant, team_id=empty.body["team_id"])
    assert (reply.status, list(reply.member_user_ids)) == (Found.STATUS_FOUND, [])

    # A routable number assigned to the team names it too (the mailbox IVR's forward).
    number = "+442071119400"
    body = {"number": number, "assignment": {"type": "team", "id": team_id}}
    assert (await admin.op("reserveNumber", body)).status == 201
    reserved = await resolve_team(harness, tenant_id=tenant, number=number)
    assert reserved.status == Found.STATUS_NOT_FOUND  # reserved: not routed yet
    assert (await admin.op("activateNumber", number=number)).status == 200
    by_number = await resolve_team(harness, tenant_id=tenant, number=number)
    assert (by_number.status, by_number.team_id) == (Found.STATUS_FOUND, team_id)
    await active_number(admin, "+442071119401")  # assigned to nobody

    not_found = Found.STATUS_NOT_FOUND
    for key in (
        {"tenant_id": tenant, "number": "+442071119401"},
        {"tenant_id": "res-elsewhere", "number": number},
        {"tenant_id": tenant, "team_id": "tm_nobody"},
        {"tenant_id": tenant, "extension": "499"},
        {"tenant_id": "res-elsewhere", "team_id": team_id},
        {"tenant_id": "", "team_id": team_id},
        {"tenant_id": tenant},
    ):
        assert (await resolve_team(harness, **key)).status == not_found, key
    # A user's extension or number is not a team.
    dan = await harness.new_user(tenant, "dan@team.example", extension="402")
    assert (await resolve_team(harness, tenant_id=tenant, extension="402")).status == not_found
    await active_number(admin, "+442071119402", dan["user_id"])
    assert (
        await resolve_team(harness, tenant_id=tenant, number="+442071119402")
    ).status == not_found
    await harness.operator.op("suspendTenant", tenant_id=tenant)
    assert (await resolve_team(harness, tenant_id=tenant, team_id=team_id)).status == not_found
