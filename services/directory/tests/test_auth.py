"""authenticate: temporary passwords, the password policy, lockout, API keys, refresh re-check."""

from __future__ import annotations

import json

import pytest
from directory_harness import Harness
from ringwise.api.v1 import api_pb2
from ringwise.directory.v1 import auth_pb2

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
Status = auth_pb2.AuthenticateReply
ADMIN = api_pb2.ROLE_TENANT_ADMIN
STRONG = "Correct-Horse-42-Battery"


def login(
    email: str, password: str, new_password: str = ""
) -> dict[str, auth_pb2.PasswordCredential]:
    return {
        "password": auth_pb2.PasswordCredential(
            email=email, password=password, new_password=new_password
        )
    }


async def test_a_temporary_password_must_be_changed_at_first_login(harness: Harness) -> None:
    tenant = await harness.new_tenant("auth-first")
    user = await harness.new_user(tenant, "First.Login@auth.example", role="supervisor")
    temporary = user["temporary_password"]

    first = await harness.authenticate(**login("first.login@AUTH.example", temporary))
    assert first.status == Status.STATUS_MUST_CHANGE_PASSWORD
    assert not first.HasField("principal")

    weak = await harness.authenticate(**login("first.login@auth.example", temporary, "short"))
    assert (weak.status, weak.detail) == (Status.STATUS_WEAK_PASSWORD, "at least 12 characters")
    plain = await harness.authenticate(
        **login("first.login@auth.example", temporary, "alllowercaseletters")
    )
    assert plain.status == Status.STATUS_WEAK_PASSWORD

    changed = await harness.authenticate(**login("first.login@auth.example", temporary, STRONG))
    assert changed.status == Status.STATUS_OK
    principal = changed.principal
    assert (principal.subject_id, principal.tenant_id, principal.role, principal.auth_method) == (
        user["user_id"],
        tenant,
        api_pb2.ROLE_SUPERVISOR,
        "password",
    )
    assert principal.email == "First.Login@auth.example"

    assert (await harness.authenticate(**login("first.login@auth.example", temporary))).status == (
        Status.STATUS_INVALID
    )
    assert (await harness.authenticate(**login("first.login@auth.example", STRONG))).status == (
        Status.STATUS_OK
    )
    # An unknown user and a wrong password look the same.
    unknown = await harness.authenticate(**login("nobody@auth.example", STRONG))
    assert unknown.status == Status.STATUS_INVALID


async def test_lockout_backs_off_exponentially_and_every_failure_is_audited(
    harness: Harness,
) -> None:
    tenant = await harness.new_tenant("auth-lock")
    user = await harness.new_user(tenant, "locked@auth.example")
    await harness.authenticate(**login("locked@auth.example", user["temporary_password"], STRONG))

    for attempt in range(1, 5):
        reply = await harness.authenticate(
            **login("locked@auth.example", f"wrong-{attempt}"), client_address="198.51.100.7"
        )
        assert reply.status == Status.STATUS_INVALID
    fifth = await harness.authenticate(**login("locked@auth.example", "wrong-5"))
    assert (fifth.status, fifth.retry_after_s) == (Status.STATUS_LOCKED, 30)
    # Locked: even the right password is refused until the time has passed.
    right = await harness.authenticate(**login("locked@auth.example", STRONG))
    assert right.status == Status.STATUS_LOCKED
    assert 1 <= right.retry_after_s <= 30

    harness.clock.advance(seconds=31)
    sixth = await harness.authenticate(**login("locked@auth.example", "wrong-6"))
    assert (sixth.status, sixth.retry_after_s) == (Status.STATUS_LOCKED, 60)
    harness.clock.advance(seconds=61)
    assert (
        await harness.authenticate(**login("locked@auth.example", STRONG))
    ).status == Status.STATUS_OK
    # Success resets the count: one more failure is just a failure.
    again = await harness.authenticate(**login("locked@auth.example", "wrong-7"))
    assert again.status == Status.STATUS_INVALID

    admin = harness.client(ADMIN, tenant)
    failures = await admin.op(
        "listHistory", query={"action": "auth.failed", "resource_id": user["user_id"]}
    )
    assert len(failures.body["items"]) == 7
    assert any("198.51.100.7" in e["detail"] for e in failures.body["items"])
    locks = await admin.op("listHistory", query={"action": "auth.locked"})
    assert [e["detail"] for e in locks.body["items"]] == [
        "locked for 60s after 6 failures",
        "locked for 30s after 5 failures",
    ]
    everything = json.dumps((await admin.op("listHistory", query={"limit": "200"})).body)
    for secret in (STRONG, user["temporary_password"], "wrong-5"):
        assert secret not in everything


async def test_suspended_users_and_tenants_are_disabled_and_refresh_rechecks(
    harness: Harness,
) -> None:
    tenant = await harness.new_tenant("auth-disabled")
    user = await harness.new_user(tenant, "dis@auth.example", role="tenant_admin")
    await harness.authenticate(**login("dis@auth.example", user["temporary_password"], STRONG))

    refreshed = await harness.authenticate(user_id=user["user_id"])
    assert (refreshed.status, refreshed.principal.role, refreshed.principal.auth_method) == (
        Status.STATUS_OK,
        api_pb2.ROLE_TENANT_ADMIN,
        "refresh",
    )
    admin = harness.client(ADMIN, tenant)
    await admin.op("updateUser", {"role": "user"}, user_id=user["user_id"])
    assert (await harness.authenticate(user_id=user["user_id"])).principal.role == api_pb2.ROLE_USER

    await admin.op("updateUser", {"status": "suspended"}, user_id=user["user_id"])
    assert (await harness.authenticate(user_id=user["user_id"])).status == Status.STATUS_DISABLED
    assert (await harness.authenticate(**login("dis@auth.example", STRONG))).status == (
        Status.STATUS_DISABLED
    )
    await admin.op("updateUser", {"status": "active"}, user_id=user["user_id"])
    assert (
        await harness.authenticate(**login("dis@auth.example", STRONG))
    ).status == Status.STATUS_OK

    await harness.operator.op("suspendTenant", tenant_id=tenant)
    assert (await harness.authenticate(**login("dis@auth.example", STRONG))).status == (
        Status.STATUS_DISABLED
    )
    assert (await harness.authenticate(user_id="no-such-user")).status == Status.STATUS_INVALID


async def test_api_keys_are_shown_once_stored_hashed_and_revocable(harness: Harness) -> None:
    tenant = await harness.new_tenant("auth-keys")
    admin = harness.client(ADMIN, tenant)
    created = await admin.op("createApiKey", {"name": "CRM sync", "role": "supervisor"})
    assert created.status == 201
    api_key = created.body["api_key"]
    key_id = created.body["key_id"]
    assert "key_hash" not in created.body

    ok = await harness.authenticate(api_key=api_key)
    assert (ok.status, ok.principal.subject_id, ok.principal.tenant_id, ok.principal.role) == (
        Status.STATUS_OK,
        key_id,
        tenant,
        api_pb2.ROLE_SUPERVISOR,
    )
    assert ok.principal.auth_method == "api_key"
    assert (await harness.authenticate(api_key=api_key + "x")).status == Status.STATUS_INVALID
    assert (await harness.authenticate(api_key="garbage")).status == Status.STATUS_INVALID

    listed = await admin.op("listApiKeys")
    assert [k["key_id"] for k in listed.body["items"]] == [key_id]
    assert api_key not in listed.raw.decode()
    stored = await harness.service.stores.directory.db.api_keys.find_one({"key_id": key_id})
    assert stored is not None and api_key not in json.dumps(stored, default=str)

    assert (await admin.op("createApiKey", {"name": "x", "role": "operator_admin"})).status == 422
    assert (await admin.op("createApiKey", {"name": "x", "role": "user"})).status == 422
    other = harness.client(ADMIN, await harness.new_tenant("auth-keys-other"))
    assert (await other.op("revokeApiKey", key_id=key_id)).status == 404
    assert (await other.op("revokeApiKey", key_id=key_id, tenant_id=tenant)).status == 404

    revoked = await admin.op("revokeApiKey", key_id=key_id)
    assert revoked.status == 200 and revoked.body["revoked_at"]
    assert (await harness.authenticate(api_key=api_key)).status == Status.STATUS_INVALID


async def test_the_operator_admin_is_bootstrapped_once_and_belongs_to_no_tenant(
    harness: Harness,
) -> None:
    users = harness.service.stores.users
    assert await users.ensure_operator("Root@Operator.example", STRONG) is True
    assert await users.ensure_operator("root@operator.example", "Another-Pass-99") is False
    reply = await harness.authenticate(**login("root@operator.example", STRONG))
    assert reply.status == Status.STATUS_OK
    assert (reply.principal.role, reply.principal.tenant_id) == (api_pb2.ROLE_OPERATOR_ADMIN, "")
    # Operators are nobody's tenant user: no tenant lists them.
    tenant = await harness.new_tenant("op-check")
    listed = await harness.client(ADMIN, tenant).op("listUsers")
    assert listed.body["items"] == []
    await harness.authenticate(**login("stranger@nowhere.example", STRONG))
    platform = await harness.operator.op("listPlatformHistory")
    assert [e["action"] for e in platform.body["items"]] == ["auth.failed", "user.created"]
    assert platform.body["items"][0]["resource_id"] == "stranger@nowhere.example"
    assert STRONG not in platform.raw.decode()
    assert (await harness.client(ADMIN, tenant).op("listPlatformHistory")).status == 403
