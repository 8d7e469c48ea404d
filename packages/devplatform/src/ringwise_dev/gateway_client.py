"""A thin client of the public API for tests and demos, and a fresh tenant with its admin."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from ringwise_dev.platform import OPERATOR_EMAIL, LocalPlatform

_tenants = itertools.count(1)
NEW_PASSWORD = "Long memorable passphrase 42"


class GatewayError(AssertionError):
    """The API answered another status than expected (an AssertionError, for tests)."""


class GatewayClient:
    """A thin client of the public API, as a tenant admin's script would use it."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.token = ""

    async def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.session.request(
            method, self.base + path, json=body, headers=headers
        ) as resp:
            text = await resp.text()
            if resp.status != status:
                raise GatewayError(f"{method} {path} -> {resp.status}: {text}")
            return await resp.json(content_type=None) if text else None

    async def login(self, email: str, password: str, new_password: str = "") -> None:
        body = {"email": email, "password": password}
        if new_password:
            body["new_password"] = new_password
        self.token = ""
        pair = await self.call("POST", "/v1/auth/login", body)
        self.token = pair["access_token"]


@dataclass
class Tenant:
    tenant_id: str
    admin: GatewayClient


async def new_tenant(platform: LocalPlatform, session: aiohttp.ClientSession) -> Tenant:
    """The operator creates a tenant and its admin; the admin signs in (changing the
    temporary password, as a first sign-in must)."""
    base = platform.service_url("gateway")
    operator = GatewayClient(session, base)
    await operator.login(OPERATOR_EMAIL, platform.operator_password)
    tenant_id = f"prov{next(_tenants)}-{int(time.time()) % 100000}"
    await operator.call(
        "POST",
        "/v1/tenants",
        {
            "tenant_id": tenant_id,
            "name": "Provisioning Ltd",
            "country": "GB",
            "time_zone": "Europe/London",
        },
        status=201,
    )
    email = f"admin@{tenant_id}.example"
    created = await operator.call(
        "POST",
        f"/v1/tenants/{tenant_id}/users",
        {"email": email, "name": "Ada Admin", "role": "tenant_admin"},
        status=201,
    )
    admin = GatewayClient(session, base)
    # A temporary password must be changed at the first sign-in.
    refused = await admin.call(
        "POST",
        "/v1/auth/login",
        {"email": email, "password": created["temporary_password"]},
        status=403,
    )
    assert refused["title"] == "Password Change Required"
    await admin.login(email, created["temporary_password"], NEW_PASSWORD)
    return Tenant(tenant_id, admin)
