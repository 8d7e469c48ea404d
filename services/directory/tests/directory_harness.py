"""The directory's test harness: the service in-process over real NATS and Mongo-wire, and
clients of each role (the fixtures are in conftest.py). A module with a name of its own, so
tests can import it (pytest puts this folder on sys.path: pythonpath in pyproject.toml)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from nats.aio.client import Client as NatsClient
from ringwise.api.v1 import api_pb2
from ringwise.directory.v1 import auth_pb2
from ringwise_directory.main import DirectoryService
from ringwise_kit import bus, subjects
from ringwise_kit.api import ApiCall, call_service, new_request_id

_dbs = itertools.count()
# Cheap argon2 for tests (the service default is 64 MiB x 3 passes).
TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
Role = api_pb2.Role


class FakeClock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]
    content_type: str
    raw: bytes

    @property
    def etag(self) -> str:
        return self.headers.get("ETag", "")


@dataclass
class Client:
    """Calls the directory as the gateway would, as one principal."""

    nc: NatsClient
    principal: api_pb2.Principal
    tenant_id: str = ""
    calls: list[Reply] = field(default_factory=list)

    async def op(
        self,
        operation: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        if_match: str = "",
        **path: str,
    ) -> Reply:
        return await self.at(operation, body, path, query=query, if_match=if_match)

    async def at(
        self,
        operation: str,
        body: Any,
        path: dict[str, str],
        *,
        query: dict[str, str] | None = None,
        if_match: str = "",
    ) -> Reply:
        """The operation with these path parameters (the client's tenant unless given)."""
        params = {"tenant_id": self.tenant_id, **path}
        call = ApiCall(
            operation=operation,
            principal=self.principal,
            path_params={k: v for k, v in params.items() if v},
            query=list((query or {}).items()),
            body=b"" if body is None else json.dumps(body).encode(),
            request_id=new_request_id(),
            if_match=if_match,
        )
        return await self.send(call)

    async def send(self, call: ApiCall) -> Reply:
        reply = await call_service(self.nc, "directory", call)
        decoded: Any = None
        if reply.body and reply.content_type.split(";")[0] in (
            "application/json",
            "application/problem+json",
        ):
            decoded = json.loads(reply.body)
        result = Reply(reply.status, decoded, dict(reply.headers), reply.content_type, reply.body)
        self.calls.append(result)
        return result


@dataclass
class Harness:
    nc: NatsClient
    service: DirectoryService
    clock: FakeClock

    def client(
        self, role: int, tenant_id: str = "", subject_id: str = "", email: str = ""
    ) -> Client:
        principal = api_pb2.Principal(
            subject_id=subject_id or f"test-{role}",
            tenant_id=tenant_id,
            role=api_pb2.Role.ValueType(role),
            email=email,
        )
        return Client(self.nc, principal, tenant_id)

    @property
    def operator(self) -> Client:
        return self.client(api_pb2.ROLE_OPERATOR_ADMIN, subject_id="op-1")

    async def authenticate(self, **credential: Any) -> auth_pb2.AuthenticateReply:
        return await bus.request(
            self.nc,
            subjects.DIRECTORY_AUTHENTICATE,
            auth_pb2.AuthenticateRequest(**credential),
            auth_pb2.AuthenticateReply,
            timeout_s=10,
        )

    async def new_tenant(self, slug: str) -> str:
        reply = await self.operator.op(
            "createTenant",
            {
                "tenant_id": slug,
                "name": slug.title(),
                "country": "GB",
                "time_zone": "Europe/London",
            },
        )
        assert reply.status == 201, reply.body
        return str(reply.body["tenant_id"])

    async def new_user(
        self, tenant_id: str, email: str, role: str = "user", **extra: Any
    ) -> dict[str, Any]:
        admin = self.client(api_pb2.ROLE_TENANT_ADMIN, tenant_id)
        reply = await admin.op(
            "createUser", {"email": email, "name": email.split("@")[0], "role": role, **extra}
        )
        assert reply.status == 201, reply.body
        return dict(reply.body)


def next_db_name() -> str:
    """A fresh database per test."""
    return f"directory_api_test_{next(_dbs)}"


# A body each operation accepts when it is sent to the caller's own tenant.
BODIES: dict[str, Any] = {
    "createUser": {"email": "new@beta.example", "name": "New"},
    "updateUser": {"name": "Renamed"},
    "createTenant": {"name": "T", "country": "GB", "time_zone": "UTC"},
    "updateTenant": {"name": "Renamed"},
    "createApiKey": {"name": "k", "role": "supervisor"},
    "reserveNumber": {"number": "+442071230999"},
    "updateNumber": {"label": "x"},
    "createDevice": {"kind": "sip_phone"},
    "updateDevice": {"label": "x"},
    "createTeam": {"name": "T", "extension": "777", "ring_strategy": "random"},
    "updateTeam": {"name": "x"},
    "createContact": {"name": "C"},
    "updateContact": {"name": "x"},
    "createSchedule": {"name": "S", "time_zone": "UTC", "ranges": []},
    "updateSchedule": {"name": "x"},
    "importUsers": {"csv": "email,name\r\nimported@beta.example,Imp\r\n"},
}


async def populate(
    harness: Harness, tenant: str, prefix: str, number: str = "+442075550000"
) -> dict[str, str]:
    """One of everything, named so that a leak is easy to spot."""
    admin = harness.client(api_pb2.ROLE_TENANT_ADMIN, tenant, subject_id=f"{prefix}-admin")
    user = await harness.new_user(tenant, f"{prefix}.user@{prefix}.example", extension="500")
    await admin.op("reserveNumber", {"number": number, "label": f"{prefix} line"})
    device = await admin.op(
        "createDevice", {"kind": "sip_phone", "label": f"{prefix} desk"}, user_id=user["user_id"]
    )
    team = await admin.op(
        "createTeam", {"name": f"{prefix} team", "extension": "600", "ring_strategy": "random"}
    )
    contact = await admin.op(
        "createContact", {"scope": "tenant", "name": f"{prefix} contact", "visibility": "public"}
    )
    schedule = await admin.op(
        "createSchedule", {"name": f"{prefix} hours", "time_zone": "UTC", "ranges": []}
    )
    key = await admin.op("createApiKey", {"name": f"{prefix} key", "role": "supervisor"})
    return {
        "tenant_id": tenant,
        "user_id": user["user_id"],
        "number": number,
        "device_id": device.body["device_id"],
        "team_id": team.body["team_id"],
        "contact_id": contact.body["contact_id"],
        "schedule_id": schedule.body["schedule_id"],
        "key_id": key.body["key_id"],
    }
