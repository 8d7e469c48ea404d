"""A tenant admin provisions a desk phone through the gateway; it registers and rings.

Real gateway, directory, routing and Asterisk: the admin creates a user, a number and a SIP
phone through the public API; routing applies the phone's PJSIP objects live over ARI; a sipp
phone registers with the generated credentials and a PSTN call to the number rings it.
Deleting the phone makes Asterisk refuse its registration. An Asterisk restart loses its
in-memory objects and routing puts them back.
"""

from __future__ import annotations

import time

import aiohttp
import pytest
from ringwise.directory.v1 import devices_pb2
from ringwise_dev.gateway_client import new_tenant
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import PhoneKind
from ringwise_dev.testing import new_caller, register_until, wait_cdrs
from ringwise_routing.provisioning.pjsip import PjsipOptions, apply_calls, delete_calls

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_admin_provisions_a_phone_that_registers_rings_and_is_refused_once_deleted(
    platform: LocalPlatform, session: aiohttp.ClientSession
) -> None:
    tenant = await new_tenant(platform, session)
    t = f"/v1/tenants/{tenant.tenant_id}"
    admin = tenant.admin
    user = await admin.call(
        "POST",
        f"{t}/users",
        {"email": f"pat@{tenant.tenant_id}.example", "name": "Pat Doe"},
        status=201,
    )
    number = f"+1555077{int(time.time() * 1000) % 10000:04d}"
    await admin.call(
        "POST",
        f"{t}/numbers",
        {"number": number, "assignment": {"type": "user", "id": user["user_id"]}},
        status=201,
    )
    await admin.call("POST", f"{t}/numbers/{number}/activate")
    phone = await admin.call(
        "POST",
        f"{t}/users/{user['user_id']}/devices",
        {"kind": "sip_phone", "label": "Desk"},
        status=201,
    )
    username, password = phone["sip_username"], phone["sip_password"]
    assert len(password) >= 22  # at least 128 random bits, url-safe
    listed = await admin.call("GET", f"{t}/users/{user['user_id']}/devices/{phone['device_id']}")
    assert "sip_password" not in listed and "md5_cred" not in listed

    port = platform.ports.phones + 40
    answering = await platform.sipp.start_phone(PhoneKind.ANSWER, port, ring_ms=300)
    try:
        registration, took_s = await register_until(
            platform, username, password, port, registered=True
        )
        assert registration.responses[-1] == 200
        assert took_s < 5, f"registered {took_s:.1f} s after the API call"
        wrong = await platform.sipp.register(
            username, password + "x", contact_port=port, local_port=port + 1
        )
        assert not wrong.registered

        caller = new_caller()
        result = await platform.sipp.call(number, caller=caller, hold_ms=1000)
        assert result.final_codes() == [200]
        [on_phone] = await answering.wait_calls(1)
        assert on_phone.answered
        [cdr] = await wait_cdrs(platform, caller)
        assert (cdr["tenant_id"], cdr["user_id"], cdr["device_id"]) == (
            tenant.tenant_id,
            user["user_id"],
            phone["device_id"],
        )

        # Asterisk keeps these objects in memory only: after its restart routing re-applies them.
        await platform.asterisk.restart()
        _, took_s = await register_until(platform, username, password, port, registered=True)
        assert took_s < 10

        await admin.call(
            "DELETE", f"{t}/users/{user['user_id']}/devices/{phone['device_id']}", status=204
        )
        refused, took_s = await register_until(platform, username, password, port, registered=False)
        assert refused.final_code in (401, 403, 404)
        assert took_s < 5
    finally:
        await answering.stop()


async def test_asterisk_accepts_routing_re_applying_a_device_it_has(
    platform: LocalPlatform,
) -> None:
    """Every resync (each ARI connect, every 5 minutes) re-applies devices Asterisk already
    has: the same PUTs must replace them, not fail (an endpoint with set_var could not be)."""
    device = devices_pb2.SipDevice(
        tenant_id="acme",
        device_id="d_reapplied",
        sip_username=f"rwreapply{int(time.time() * 1000) % 100000:05d}",
        md5_cred="0" * 32,
        realm="asterisk",
        kind="phone",
        max_contacts=1,
    )
    requests = apply_calls(device, PjsipOptions(rewrite_contact=False))
    asterisk = platform.asterisk
    async with aiohttp.ClientSession(headers=asterisk.ari_auth_headers()) as client:
        try:
            for attempt in ("create", "replace"):
                for request in requests:
                    async with client.put(
                        f"{asterisk.ari_url}/ari{request.path}", json=request.body
                    ) as resp:
                        assert resp.status == 200, (attempt, request.path, await resp.text())
        finally:
            for request in delete_calls(device.sip_username):
                async with client.delete(f"{asterisk.ari_url}/ari{request.path}"):
                    pass
