"""No reply ever carries another tenant's data: every operation, every role, two tenants."""

from __future__ import annotations

import re

import pytest
from directory_harness import BODIES, Harness, populate
from ringwise.api.v1 import api_pb2
from ringwise_directory.common.access import load_rules

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
ROLES = (
    api_pb2.ROLE_TENANT_ADMIN,
    api_pb2.ROLE_SUPERVISOR,
    api_pb2.ROLE_USER,
    api_pb2.ROLE_COMPLIANCE_OFFICER,
)
MARK = "alphasecret"


def leaks(raw: bytes, alpha: dict[str, str]) -> list[str]:
    text = raw.decode(errors="replace").lower()
    return [value for value in [MARK, *alpha.values()] if value.lower() in text]


async def test_no_operation_answers_with_another_tenants_data(harness: Harness) -> None:
    alpha = await populate(harness, await harness.new_tenant(MARK), MARK, "+442075550001")
    beta = await populate(harness, await harness.new_tenant("beta"), "beta", "+442075550002")
    rules = load_rules()
    checked = 0
    for role in ROLES:
        # The beta principal acting on its own user id where it needs one (x-ringwise-self).
        caller = harness.client(role, beta["tenant_id"], subject_id=beta["user_id"])
        for op_id, rule in sorted(rules.items()):
            names = re.findall(r"{(\w+)}", rule.path)
            body = BODIES.get(op_id)
            # 1. Alpha's path, alpha's ids: the tenant scope alone refuses it.
            alpha_path = {name: alpha[name] for name in names}
            reply = await caller.at(op_id, body, alpha_path)
            if names:
                assert reply.status in (403, 404), (role, op_id, reply.status, reply.body)
            assert leaks(reply.raw, alpha) == [], (role, op_id, reply.body)
            # 2. Beta's own tenant, alpha's resource ids: not found (or forbidden by role).
            if len(names) > 1:
                mixed = {name: alpha[name] for name in names} | {"tenant_id": beta["tenant_id"]}
                reply = await caller.at(op_id, body, mixed)
                assert reply.status in (403, 404, 409, 422), (role, op_id, reply.status, reply.body)
                assert leaks(reply.raw, alpha) == [], (role, op_id, reply.body)
            # 3. Beta's own resources: whatever it answers carries nothing of alpha.
            own = {name: beta[name] for name in names}
            reply = await caller.at(op_id, body, own)
            assert reply.status < 500, (role, op_id, reply.body)
            assert leaks(reply.raw, alpha) == [], (role, op_id, reply.body)
            checked += 1
    assert checked == len(ROLES) * len(rules)
    # Searching for alpha's names from beta finds nothing.
    admin = harness.client(api_pb2.ROLE_TENANT_ADMIN, beta["tenant_id"])
    search = await admin.op("searchDirectory", query={"q": MARK})
    assert search.body["items"] == []
