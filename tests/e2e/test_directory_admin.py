"""What a tenant admin does in the directory takes effect on real phones, through the gateway.

A suspended user's desk phone is refused by Asterisk and registers again once the user is
reactivated; a reset SIP password replaces the old one at once; the user's own sign-in stops
while suspended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from ringwise_dev.gateway_client import NEW_PASSWORD, GatewayClient, new_tenant
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import Registration

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
        yield s


async def registers(
    platform: LocalPlatform, user: str, password: str, port: int, *, expected: bool
) -> Registration:
    """REGISTER until Asterisk gives the expected outcome (changes apply within seconds)."""
    deadline = time.monotonic() + 10
    while True:
        outcome = await platform.sipp.register(
            user, password, contact_port=port, local_port=port + 1
        )
        if outcome.registered == expected:
            return outcome
        assert time.monotonic() < deadline, f"still {outcome.responses} after 10 s"
        await asyncio.sleep(0.2)


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

    await registers(platform, username, password, port, expected=True)
    await admin.call("PATCH", f"{t}/users/{user['user_id']}", {"status": "suspended"})
    refused = await registers(platform, username, password, port, expected=False)
    assert refused.final_code in (401, 403, 404)
    signed_out = GatewayClient(session, platform.service_url("gateway"))
    await signed_out.call(
        "POST", "/v1/auth/login", {"email": email, "password": NEW_PASSWORD}, status=403
    )

    await admin.call("PATCH", f"{t}/users/{user['user_id']}", {"status": "active"})
    await registers(platform, username, password, port, expected=True)
    await own.login(email, NEW_PASSWORD)

    reset = await admin.call(
        "POST", f"{t}/users/{user['user_id']}/devices/{phone['device_id']}/reset-password"
    )
    assert reset["sip_password"] != password
    await registers(platform, username, password, port, expected=False)
    await registers(platform, username, reset["sip_password"], port, expected=True)
