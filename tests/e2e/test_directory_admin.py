"""What a tenant admin does in the directory takes effect on real phones, through the gateway.

A suspended user's desk phone is refused by Asterisk and registers again once the user is
reactivated; a reset SIP password replaces the old one at once; the user's own sign-in stops
while suspended.
"""

from __future__ import annotations

import aiohttp
import pytest
from ringwise_dev.gateway_client import NEW_PASSWORD, GatewayClient, new_tenant
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.testing import register_until

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_suspending_a_user_stops_their_phone_and_sign_in_until_reactivated(
    platform: LocalPlatform, session: aiohttp.ClientSession
) -> None:
    tenant = await new_tenant(platform, session)
    t = f"/v1/tenants/{tenant.tenant_id}"
    admin = tenant.admin
    email = f"sam@{tenant.tenant_id}.example"
    user = await admin.call(
        "POST", f"{t}/users", {"email": email, "name": "Sam Suspended"}, status=201
    )
    phone = await admin.call(
        "POST", f"{t}/users/{user['user_id']}/devices", {"kind": "sip_phone"}, status=201
    )
    username, password = phone["sip_username"], phone["sip_password"]
    port = platform.ports.phones + 44
    own = GatewayClient(session, platform.service_url("gateway"))
    await own.call(
        "POST",
        "/v1/auth/login",
        {"email": email, "password": user["temporary_password"]},
        status=403,
    )
    await own.login(email, user["temporary_password"], NEW_PASSWORD)

    await register_until(platform, username, password, port, registered=True, timeout_s=10)
    await admin.call("PATCH", f"{t}/users/{user['user_id']}", {"status": "suspended"})
    refused, _ = await register_until(
        platform, username, password, port, registered=False, timeout_s=10
    )
    assert refused.final_code in (401, 403, 404)
    signed_out = GatewayClient(session, platform.service_url("gateway"))
    await signed_out.call(
        "POST", "/v1/auth/login", {"email": email, "password": NEW_PASSWORD}, status=403
    )

    await admin.call("PATCH", f"{t}/users/{user['user_id']}", {"status": "active"})
    await register_until(platform, username, password, port, registered=True, timeout_s=10)
    await own.login(email, NEW_PASSWORD)

    reset = await admin.call(
        "POST", f"{t}/users/{user['user_id']}/devices/{phone['device_id']}/reset-password"
    )
    assert reset["sip_password"] != password
    await register_until(platform, username, password, port, registered=False, timeout_s=10)
    await register_until(
        platform, username, reset["sip_password"], port, registered=True, timeout_s=10
    )
