"""Tenants and users through the gateway's forwarding (call_service) on real NATS + Mongo-wire."""

from __future__ import annotations

import pytest
from directory_harness import Harness
from ringwise.api.v1 import api_pb2

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
ADMIN, SUPERVISOR, USER = api_pb2.ROLE_TENANT_ADMIN, api_pb2.ROLE_SUPERVISOR, api_pb2.ROLE_USER


async def test_operator_creates_tenants_and_bad_input_gets_field_errors(harness: Harness) -> None:
    op = harness.operator
    created = await op.op(
        "createTenant",
        {
            "name": "Zeta Ltd",
            "country": "DE",
            "vat_id": "DE123456789",
            "time_zone": "Europe/Berlin",
            "language": "de",
        },
    )
    assert created.status == 201
    assert created.body["status"] == "active" and created.etag == '"1"'
    tenant_id = created.body["tenant_id"]

    bad = await op.op(
        "createTenant", {"name": "", "country": "XX", "time_zone": "Mars/Base", "extra": 1}
    )
    assert bad.status == 422
    assert bad.content_type == "application/problem+json"
    assert {e["field"] for e in bad.body["errors"]} == {"name", "country", "time_zone", "extra"}

    assert (await op.op("createTenant", "not an object")).status == 422
    await harness.new_tenant("dup-co")
    duplicate = await op.op(
        "createTenant",
        {"tenant_id": "dup-co", "name": "Again", "country": "GB", "time_zone": "UTC"},
    )
    assert duplicate.status == 409

    stale = await op.op("updateTenant", {"name": "Zeta GmbH"}, if_match='"7"', tenant_id=tenant_id)
    assert stale.status == 412
    fresh = await op.op(
        "updateTenant", {"name": "Zeta GmbH"}, if_match=created.etag, tenant_id=tenant_id
    )
    assert (fresh.status, fresh.body["name"], fresh.etag) == (200, "Zeta GmbH", '"2"')

    # Tenant admins read their own tenant, never another, and do not create tenants.
    own = harness.client(ADMIN, tenant_id)
    assert (await own.op("getTenant")).body["name"] == "Zeta GmbH"
    assert (await own.op("getTenant", tenant_id="dup-co")).status == 404
    assert (
        await own.op("createTenant", {"name": "X", "country": "GB", "time_zone": "UTC"})
    ).status == 403
    assert (await own.op("listTenants")).status == 403
    # Operators reach every tenant, but only tenants that exist.
    ghost = await op.op(
        "createTeam", {"name": "T", "extension": "10", "ring_strategy": "random"}, tenant_id="ghost"
    )
    assert ghost.status == 404
    assert (await op.op("listUsers", tenant_id="ghost")).status == 404


async def test_tenant_list_pages_with_a_cursor(harness: Harness) -> None:
    for index in range(5):
        await harness.new_tenant(f"page-{index}")
    seen: list[str] = []
    cursor = ""
    while True:
        query = {"limit": "2", "sort": "tenant_id"}
        if cursor:
            query["cursor"] = cursor
        page = await harness.operator.op("listTenants", query=query)
        assert page.status == 200
        seen += [t["tenant_id"] for t in page.body["items"]]
        cursor = page.body["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(seen)
    assert {f"page-{i}" for i in range(5)} <= set(seen)
    assert len(seen) == len(set(seen))
    bad = await harness.operator.op("listTenants", query={"cursor": "garbage", "limit": "0"})
    assert bad.status == 400
    assert {e["field"] for e in bad.body["errors"]} == {"cursor", "limit"}


async def test_user_lifecycle_email_is_an_immutable_platform_wide_username(
    harness: Harness,
) -> None:
    tenant = await harness.new_tenant("users-a")
    other = await harness.new_tenant("users-b")
    admin = harness.client(ADMIN, tenant)

    created = await admin.op(
        "createUser",
        {
            "email": "Ann.Lee@Example.com",
            "name": "Ann Lee",
            "extension": "201",
            "role": "supervisor",
        },
    )
    assert created.status == 201
    user = created.body
    assert len(user["temporary_password"]) >= 12
    assert "email_key" not in user and "password_hash" not in user
    assert (user["role"], user["status"], user["language"]) == ("supervisor", "active", "en")

    # Unique across the platform, whatever the case.
    other_admin = harness.client(ADMIN, other)
    clash = await other_admin.op(
        "createUser", {"email": "ann.lee@example.COM", "name": "Other Ann"}
    )
    assert clash.status == 409
    assert clash.body["errors"][0]["field"] == "email"
    taken_ext = await admin.op(
        "createUser", {"email": "bo@example.com", "name": "Bo", "extension": "201"}
    )
    assert taken_ext.status in (409, 422)
    assert taken_ext.body["errors"][0]["field"] == "extension"

    user_id = user["user_id"]
    changed_email = await admin.op("updateUser", {"email": "ann@example.com"}, user_id=user_id)
    assert changed_email.status == 422
    assert changed_email.body["errors"] == [
        {"field": "email", "message": "is the username and can never change"}
    ]
    same_email = await admin.op(
        "updateUser", {"email": "ann.lee@example.com", "name": "Ann B. Lee"}, user_id=user_id
    )
    assert (same_email.status, same_email.body["email"]) == (200, "Ann.Lee@Example.com")

    operator_role = await admin.op("updateUser", {"role": "operator_admin"}, user_id=user_id)
    assert operator_role.status == 422

    not_ours = await admin.op(
        "createUser",
        {"email": "cy@example.com", "name": "Cy", "outbound_numbers": ["+442071234567"]},
    )
    assert not_ours.status == 422
    assert not_ours.body["errors"][0]["field"] == "outbound_numbers/0"

    # Another tenant's admin cannot see or change the user; their own tenant has no such id.
    assert (await other_admin.op("getUser", user_id=user_id)).status == 404
    assert (await other_admin.op("getUser", user_id=user_id, tenant_id=tenant)).status == 404
    assert (
        await other_admin.op("updateUser", {"name": "x"}, user_id=user_id, tenant_id=tenant)
    ).status == 404

    deleted = await admin.op("deleteUser", user_id=user_id, if_match=same_email.etag)
    assert deleted.status == 204
    assert (await admin.op("getUser", user_id=user_id)).status == 404


async def test_a_user_reads_and_edits_only_their_own_profile(harness: Harness) -> None:
    tenant = await harness.new_tenant("self-service")
    me = await harness.new_user(tenant, "me@self.example")
    them = await harness.new_user(tenant, "them@self.example")
    client = harness.client(USER, tenant, subject_id=me["user_id"])

    own = await client.op("getUser", user_id=me["user_id"])
    assert (own.status, own.body["email"]) == (200, "me@self.example")
    renamed = await client.op(
        "updateUser", {"name": "Me Myself", "language": "fr"}, user_id=me["user_id"]
    )
    assert (renamed.status, renamed.body["name"], renamed.body["language"]) == (
        200,
        "Me Myself",
        "fr",
    )

    promote = await client.op(
        "updateUser", {"role": "tenant_admin", "extension": "999"}, user_id=me["user_id"]
    )
    assert promote.status == 422
    assert {e["field"] for e in promote.body["errors"]} == {"role", "extension"}
    assert (await client.op("getUser", user_id=them["user_id"])).status == 404
    assert (await client.op("updateUser", {"name": "x"}, user_id=them["user_id"])).status == 404
    assert (await client.op("listUsers")).status == 403
    assert (await client.op("createUser", {"email": "z@self.example", "name": "Z"})).status == 403

    supervisor = harness.client(SUPERVISOR, tenant)
    assert (await supervisor.op("listUsers")).status == 200
    assert (
        await supervisor.op("createUser", {"email": "s@self.example", "name": "S"})
    ).status == 403


async def test_users_list_filters_and_sorts(harness: Harness) -> None:
    tenant = await harness.new_tenant("listing")
    for name, role in (("carol", "user"), ("alice", "supervisor"), ("bob", "user")):
        await harness.new_user(tenant, f"{name}@list.example", role=role)
    admin = harness.client(ADMIN, tenant)
    by_name = await admin.op("listUsers", query={"sort": "-name"})
    assert [u["name"] for u in by_name.body["items"]] == ["carol", "bob", "alice"]
    supervisors = await admin.op("listUsers", query={"role": "supervisor"})
    assert [u["name"] for u in supervisors.body["items"]] == ["alice"]
    assert (await admin.op("listUsers", query={"role": "king"})).status == 400
    assert (await admin.op("listUsers", query={"sort": "password"})).status == 400
