"""schemathesis against the gateway's OpenAPI document, as every role of two tenants.

Each operation of the document (every service's) is called with generated requests, as each
actor: an operator admin, and a tenant admin, supervisor, user and compliance officer of
tenant A, and a tenant admin and user of tenant B. Path parameters are sometimes the actor's
own tenant and real ids (so requests get past the 404s), sometimes the other tenant's.

Asserted on every response: no server error (5xx), and nothing of the other tenant in it —
its id, its users' ids, emails and names, its numbers, its devices' SIP user names — unless
the request itself carried that text (a 404 may echo the id it did not find).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from ringwise_dev.gateway_client import NEW_PASSWORD, GatewayClient, new_tenant
from ringwise_dev.platform import OPERATOR_EMAIL, LocalPlatform
from ringwise_gateway.settings import DEFAULT_OPENAPI

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

EXAMPLES_PER_OPERATION = 6
ROLES_OF_A = ("tenant_admin", "supervisor", "user", "compliance_officer")


@dataclass
class Actor:
    name: str
    token: str
    tenant_id: str  # "" for the operator
    other_tenant: str
    own_ids: dict[str, list[str]] = field(default_factory=dict)
    other_ids: dict[str, list[str]] = field(default_factory=dict)
    forbidden: frozenset[str] = frozenset()  # the other tenant's data


@dataclass
class TenantData:
    tenant_id: str
    admin: GatewayClient
    ids: dict[str, list[str]] = field(default_factory=dict)
    markers: set[str] = field(default_factory=set)
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, str] = field(default_factory=dict)


_unique = itertools.count(1)


async def populate(platform: LocalPlatform, session: aiohttp.ClientSession, tag: str) -> TenantData:
    tenant = await new_tenant(platform, session)
    admin, t = tenant.admin, f"/v1/tenants/{tenant.tenant_id}"
    data = TenantData(tenant.tenant_id, admin, markers={tenant.tenant_id})
    me = await admin.call("GET", "/v1/auth/me")
    data.tokens["tenant_admin"] = admin.token
    data.user_ids["tenant_admin"] = me["subject_id"]
    data.markers |= {me["subject_id"], me["email"]}
    stamp = f"{tag}{next(_unique)}{int(time.time()) % 10000}"
    for role in ROLES_OF_A:
        if role == "tenant_admin":
            continue
        email = f"{role}.{stamp}@{tenant.tenant_id}.example"
        name = f"Zq{tag.upper()} {role.title()} Marker{stamp}"
        user = await admin.call(
            "POST", f"{t}/users", {"email": email, "name": name, "role": role}, status=201
        )
        actor = GatewayClient(admin.session, admin.base)
        await actor.login(email, user["temporary_password"], NEW_PASSWORD)
        data.tokens[role] = actor.token
        data.user_ids[role] = user["user_id"]
        data.markers |= {user["user_id"], email, name}
    number = f"+1555{'1' if tag == 'a' else '2'}{int(time.time() * 1000) % 1000000:06d}"
    user_id = data.user_ids["user"]
    await admin.call(
        "POST",
        f"{t}/numbers",
        {"number": number, "assignment": {"type": "user", "id": user_id}},
        status=201,
    )
    phone = await admin.call(
        "POST", f"{t}/users/{user_id}/devices", {"kind": "sip_phone", "label": "Desk"}, status=201
    )
    contact = await admin.call(
        "POST",
        f"{t}/contacts",
        {
            "name": f"Zq{tag.upper()} Contact Marker{stamp}",
            "numbers": [{"number": number, "label": "work"}],
            "scope": "tenant",
            "visibility": "public",
        },
        status=201,
    )
    data.markers |= {number, phone["sip_username"], phone["device_id"], contact["contact_id"]}
    data.ids = {
        "user_id": list(data.user_ids.values()),
        "number": [number],
        "device_id": [phone["device_id"]],
        "contact_id": [contact["contact_id"]],
    }
    return data


def readable(content: bytes) -> str:
    """The response as text to search; a spreadsheet (a zip) is searched inside."""
    if content.startswith(b"PK"):
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            content = b"".join(archive.read(name) for name in archive.namelist())
    return content.decode("utf-8", errors="replace")


class Fuzzer:
    """Runs in a thread: schemathesis calls with requests."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.calls = 0
        self.failures: list[str] = []

    def pick(self, actor: Actor, name: str, choice: int) -> str | None:
        if name == "tenant_id":
            # The operator works in tenant A; tenant roles in their own, or in the other one.
            return actor.other_tenant if choice == 2 or not actor.tenant_id else actor.tenant_id
        ids = actor.own_ids if choice == 1 else actor.other_ids if choice == 2 else {}
        found = ids.get(name)
        return found[self.calls % len(found)] if found else None

    def check(self, actor: Actor, case: Any, choice: int) -> None:
        for name in list(case.path_parameters or {}):
            value = self.pick(actor, name, choice)
            if value is not None:
                case.path_parameters[name] = value
        response = case.call(
            base_url=self.base_url,
            session=self.http,
            headers={"Authorization": f"Bearer {actor.token}"},
            timeout=20,
        )
        self.calls += 1
        label = f"{actor.name}: {case.method} {case.formatted_path}"
        assert response.status_code < 500, (
            f"{label} -> {response.status_code}: {readable(response.content)[:300]}"
        )
        sent = json.dumps([case.path_parameters, case.query, case.body], default=str)
        body = readable(response.content)
        leaked = [m for m in actor.forbidden if m in body and m not in sent]
        assert not leaked, f"{label} -> {response.status_code} leaks {leaked}: {body[:300]}"

    def run_operation(self, operation: Any, actor: Actor) -> None:
        choices = itertools.count()

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def test(case: Any) -> None:
            self.check(actor, case, next(choices) % 3)

        try:
            test()
        except Unsatisfiable:
            pass
        except AssertionError as exc:
            self.failures.append(str(exc).splitlines()[0][:600])

    def run(self, actors: list[Actor]) -> None:
        doc = yaml.safe_load(DEFAULT_OPENAPI.read_text())
        for result in schemathesis.openapi.from_dict(doc).get_all_operations():
            # An operation schemathesis cannot read is a defect of the document.
            if not isinstance(result, schemathesis.core.result.Ok):
                self.failures.append(f"unreadable operation: {result.err()}")
                continue
            operation = result.ok()
            if operation.path.startswith("/v1/auth/"):
                continue  # sign-in has its own tests; fuzzing it would lock the accounts out
            for actor in actors:
                self.run_operation(operation, actor)


async def test_generated_requests_as_every_role_of_two_tenants_never_fail_or_leak(
    platform: LocalPlatform,
) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        a = await populate(platform, session, "a")
        b = await populate(platform, session, "b")
        operator = GatewayClient(session, platform.service_url("gateway"))
        await operator.login(OPERATOR_EMAIL, platform.operator_password)
    actors = [
        Actor(
            f"A {role}",
            a.tokens[role],
            a.tenant_id,
            b.tenant_id,
            a.ids,
            b.ids,
            frozenset(b.markers),
        )
        for role in ROLES_OF_A
    ] + [
        Actor(
            f"B {role}",
            b.tokens[role],
            b.tenant_id,
            a.tenant_id,
            b.ids,
            a.ids,
            frozenset(a.markers),
        )
        for role in ("tenant_admin", "user")
    ]
    # The operator may see every tenant: only server errors are checked for it.
    actors.append(Actor("operator", operator.token, "", a.tenant_id, a.ids, b.ids))
    fuzzer = Fuzzer(platform.service_url("gateway"))
    await asyncio.to_thread(fuzzer.run, actors)
    assert fuzzer.calls > 1000
    assert fuzzer.failures == []
