"""The gateway in front of real NATS and Redis, with a stand-in directory (authenticate) and a
stand-in "things" service behind it: what a client sees end to end through the gateway."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from aiohttp import ClientResponse, ClientSession
from aiohttp.test_utils import TestServer
from nats.aio.client import Client as NatsClient
from ringwise.api.v1 import api_pb2
from ringwise.directory.v1 import auth_pb2
from ringwise_dev.infra import Infra
from ringwise_gateway.main import create_app
from ringwise_gateway.openapi.merge import BASE, merge
from ringwise_gateway.settings import GatewaySettings
from ringwise_kit import bus, subjects
from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, serve_api

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

AUTH_FRAGMENT = Path(__file__).resolve().parents[1] / "ringwise_gateway" / "auth" / "api.yaml"
THINGS: dict[str, Any] = {
    "paths": {
        "/v1/tenants/{tenant_id}/things": {
            "parameters": [{"$ref": "#/components/parameters/TenantId"}],
            "post": {
                "operationId": "createThing",
                "x-ringwise-roles": ["tenant_admin"],
                "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/NewThing"}}
                    },
                },
                "responses": {"201": {"description": "created"}},
            },
            "get": {
                "operationId": "listThings",
                "x-ringwise-roles": ["tenant_admin", "supervisor"],
                "parameters": [{"$ref": "#/components/parameters/Limit"}],
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/v1/tenants/{tenant_id}/users/{user_id}/things": {
            "parameters": [
                {"$ref": "#/components/parameters/TenantId"},
                {"name": "user_id", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "get": {
                "operationId": "listMyThings",
                "x-ringwise-roles": ["tenant_admin"],
                "x-ringwise-self": "user_id",
                "parameters": [
                    {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["csv"]}}
                ],
                "responses": {"200": {"description": "ok"}},
            },
        },
    },
    "components": {
        "schemas": {
            "NewThing": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 50}},
            }
        }
    },
}

# Owned by a service that is not running.
GHOSTS: dict[str, Any] = {
    "paths": {
        "/v1/tenants/{tenant_id}/ghosts": {
            "get": {
                "operationId": "listGhosts",
                "x-ringwise-roles": ["tenant_admin"],
                "parameters": [{"$ref": "#/components/parameters/TenantId"}],
                "responses": {"200": {"description": "ok"}},
            }
        }
    }
}

# The stand-in directory's accounts: email -> (password, principal).
ACCOUNTS = {
    "admin@one.example": ("correct horse battery", "u-admin1", "t1", api_pb2.ROLE_TENANT_ADMIN),
    "user@one.example": ("correct horse battery", "u-user1", "t1", api_pb2.ROLE_USER),
    "admin@two.example": ("correct horse battery", "u-admin2", "t2", api_pb2.ROLE_TENANT_ADMIN),
    "temp@one.example": ("temporary-1234", "u-temp", "t1", api_pb2.ROLE_USER),
}
API_KEY = "rwk_test_key_for_tenant_one"


def principal_of(email: str) -> api_pb2.Principal:
    _, sub, tenant, role = ACCOUNTS[email]
    return api_pb2.Principal(
        subject_id=sub, tenant_id=tenant, role=role, email=email, auth_method="password"
    )


async def fake_authenticate(req: auth_pb2.AuthenticateRequest) -> auth_pb2.AuthenticateReply:
    status = auth_pb2.AuthenticateReply.Status
    kind = req.WhichOneof("credential")
    if kind == "api_key":
        if req.api_key != API_KEY:
            return auth_pb2.AuthenticateReply(status=status.STATUS_INVALID)
        return auth_pb2.AuthenticateReply(
            status=status.STATUS_OK,
            principal=api_pb2.Principal(
                subject_id="key-1",
                tenant_id="t1",
                role=api_pb2.ROLE_SUPERVISOR,
                auth_method="api_key",
            ),
        )
    if kind == "user_id":
        for email, (_, sub, _, _) in ACCOUNTS.items():
            if sub == req.user_id:
                return auth_pb2.AuthenticateReply(
                    status=status.STATUS_OK, principal=principal_of(email)
                )
        return auth_pb2.AuthenticateReply(status=status.STATUS_DISABLED)
    cred = req.password
    if cred.email == "locked@one.example":
        return auth_pb2.AuthenticateReply(status=status.STATUS_LOCKED, retry_after_s=30)
    account = ACCOUNTS.get(cred.email)
    if account is None or account[0] != cred.password:
        return auth_pb2.AuthenticateReply(status=status.STATUS_INVALID)
    if cred.email == "temp@one.example" and not cred.new_password:
        return auth_pb2.AuthenticateReply(status=status.STATUS_MUST_CHANGE_PASSWORD)
    return auth_pb2.AuthenticateReply(status=status.STATUS_OK, principal=principal_of(cred.email))


things = ApiRouter()
created: list[tuple[str, str]] = []
_ids = itertools.count(1)


@things.operation("createThing")
async def create_thing(call: ApiCall) -> ApiResult:
    body = call.json()
    if body["name"] == "boom":
        raise RuntimeError("handler bug")
    if body["name"] == "taken":
        raise ApiError(409, "Conflict", "name taken")
    thing_id = f"th{next(_ids)}"
    created.append((call.tenant_id, thing_id))
    return ApiResult(
        201,
        {"id": thing_id, "name": body["name"], "tenant_id": call.tenant_id},
        headers={"ETag": '"1"'},
    )


@things.operation("listThings")
async def list_things(call: ApiCall) -> ApiResult:
    items = [{"id": i} for t, i in created if t == call.tenant_id]
    return ApiResult(body={"items": items, "next_cursor": None, "by": call.principal.subject_id})


@things.operation("listMyThings")
async def list_my_things(call: ApiCall) -> ApiResult:
    if call.query_one("format") == "csv":
        return ApiResult(body=b"id\n", content_type="text/csv; charset=utf-8")
    return ApiResult(body={"items": [], "next_cursor": None, "user": call.param("user_id")})


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    doc = merge(
        yaml.safe_load(BASE.read_text()),
        [
            ("gateway", "auth/api.yaml", yaml.safe_load(AUTH_FRAGMENT.read_text())),
            ("things", "things/api.yaml", copy.deepcopy(THINGS)),
            ("ghost", "ghost/api.yaml", GHOSTS),
        ],
    )
    path = tmp_path_factory.mktemp("gw") / "openapi.yaml"
    path.write_text(yaml.safe_dump(doc))
    nc: NatsClient = await bus.connect(infra.endpoints.nats_url, "gateway-test-backends")
    subs = [
        await bus.serve(
            nc,
            subjects.DIRECTORY_AUTHENTICATE,
            "directory",
            auth_pb2.AuthenticateRequest,
            fake_authenticate,
        ),
        await serve_api(nc, "things", things),
    ]
    settings = GatewaySettings(
        nats_url=infra.endpoints.nats_url,
        redis_url=infra.endpoints.redis_url,
        token_signing_key="s" * 48,
        openapi_path=path,
        forward_timeout_s=2,
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url(""))
    await server.close()
    for sub in subs:
        await sub.unsubscribe()
    await nc.drain()


async def login(session: ClientSession, base: str, email: str, **extra: str) -> ClientResponse:
    password = ACCOUNTS[email][0] if email in ACCOUNTS else "whatever"
    return await session.post(
        f"{base}/v1/auth/login", json={"email": email, "password": password, **extra}
    )


async def token_of(session: ClientSession, base: str, email: str) -> dict[str, str]:
    resp = await login(session, base, email)
    assert resp.status == 200, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


async def problem(resp: ClientResponse, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = json.loads(await resp.text())
    assert body["status"] == status
    return body


async def test_admin_signs_in_and_creates_in_their_tenant(gateway: str) -> None:
    async with ClientSession() as s:
        auth = await token_of(s, gateway, "admin@one.example")
        resp = await s.post(f"{gateway}/v1/tenants/t1/things", json={"name": "desk"}, headers=auth)
        assert resp.status == 201
        assert resp.headers["ETag"] == '"1"'
        assert (await resp.json())["tenant_id"] == "t1"
        me = await (await s.get(f"{gateway}/v1/auth/me", headers=auth)).json()
        assert me == {
            "subject_id": "u-admin1",
            "tenant_id": "t1",
            "role": "tenant_admin",
            "email": "admin@one.example",
            "auth_method": "password",
        }


async def test_another_tenant_answers_404_and_reveals_nothing(gateway: str) -> None:
    async with ClientSession() as s:
        mine = await token_of(s, gateway, "admin@one.example")
        await s.post(f"{gateway}/v1/tenants/t1/things", json={"name": "secret-of-t1"}, headers=mine)
        other = await token_of(s, gateway, "admin@two.example")
        for resp in (
            await s.get(f"{gateway}/v1/tenants/t1/things", headers=other),
            await s.post(f"{gateway}/v1/tenants/t1/things", json={"name": "x"}, headers=other),
        ):
            body = await problem(resp, 404)
            assert "secret-of-t1" not in json.dumps(body) and "th" not in body.get("detail", "")
        listed = await (await s.get(f"{gateway}/v1/tenants/t2/things", headers=other)).json()
        assert all(t == "t2" for t, i in created if {"id": i} in listed["items"])


async def test_roles_are_enforced_and_users_reach_only_themselves(gateway: str) -> None:
    async with ClientSession() as s:
        user = await token_of(s, gateway, "user@one.example")
        await problem(
            await s.post(f"{gateway}/v1/tenants/t1/things", json={"name": "x"}, headers=user), 403
        )
        mine = await s.get(f"{gateway}/v1/tenants/t1/users/u-user1/things", headers=user)
        assert (await mine.json())["user"] == "u-user1"
        await problem(
            await s.get(f"{gateway}/v1/tenants/t1/users/u-admin1/things", headers=user), 404
        )


async def test_bad_input_gets_4xx_problems_with_field_detail(gateway: str) -> None:
    async with ClientSession() as s:
        auth = await token_of(s, gateway, "admin@one.example")
        url = f"{gateway}/v1/tenants/t1/things"
        body = await problem(
            await s.post(url, json={"name": "", "colour": "red"}, headers=auth), 422
        )
        assert {e["field"] for e in body["errors"]} == {"body", "body/name"}
        body = await problem(
            await s.post(
                url, data=b"{not json", headers={**auth, "Content-Type": "application/json"}
            ),
            400,
        )
        assert body["errors"][0]["field"] == "body"
        await problem(
            await s.post(url, data=b"name=x", headers={**auth, "Content-Type": "text/plain"}), 415
        )
        await problem(await s.post(url, headers=auth), 400)
        body = await problem(await s.get(f"{url}?limit=0&sort=x", headers=auth), 400)
        assert {e["field"] for e in body["errors"]} == {"query.limit", "query.sort"}
        await problem(await s.get(f"{gateway}/v1/tenants/t1/nothing", headers=auth), 404)
        await problem(await s.delete(url, headers=auth), 405)
        await problem(await s.get(url), 401)
        await problem(await s.get(url, headers={"Authorization": "Bearer forged.token.here"}), 401)
        await problem(await s.get(url, headers={"Authorization": "Basic abc"}), 401)


async def test_service_errors_pass_through_and_crashes_stay_opaque(gateway: str) -> None:
    async with ClientSession() as s:
        auth = await token_of(s, gateway, "admin@one.example")
        url = f"{gateway}/v1/tenants/t1/things"
        await problem(await s.post(url, json={"name": "taken"}, headers=auth), 409)
        body = await problem(await s.post(url, json={"name": "boom"}, headers=auth), 500)
        assert "handler bug" not in json.dumps(body)


async def test_idempotency_key_replays_the_first_reply(gateway: str) -> None:
    async with ClientSession() as s:
        auth = await token_of(s, gateway, "admin@one.example")
        url = f"{gateway}/v1/tenants/t1/things"
        headers = {**auth, "Idempotency-Key": "create-lamp-1"}
        before = len(created)
        first = await s.post(url, json={"name": "lamp"}, headers=headers)
        again = await s.post(url, json={"name": "lamp"}, headers=headers)
        assert (first.status, again.status) == (201, 201)
        assert await first.json() == await again.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert len(created) == before + 1
        await problem(await s.post(url, json={"name": "other"}, headers=headers), 422)


async def test_login_failures_lockout_and_temporary_passwords(gateway: str) -> None:
    async with ClientSession() as s:
        await problem(
            await s.post(
                f"{gateway}/v1/auth/login", json={"email": "admin@one.example", "password": "wrong"}
            ),
            401,
        )
        locked = await s.post(
            f"{gateway}/v1/auth/login", json={"email": "locked@one.example", "password": "x"}
        )
        await problem(locked, 429)
        assert locked.headers["Retry-After"] == "30"
        body = await problem(await login(s, gateway, "temp@one.example"), 403)
        assert body["title"] == "Password Change Required"
        resp = await login(s, gateway, "temp@one.example", new_password="a much better password")
        assert resp.status == 200
        await problem(
            await s.post(
                f"{gateway}/v1/auth/login", json={"email": "not-an-email", "password": "x"}
            ),
            422,
        )


async def test_refresh_tokens_rotate_and_logout_revokes(gateway: str) -> None:
    async with ClientSession() as s:
        pair = await (await login(s, gateway, "admin@one.example")).json()
        first = await s.post(
            f"{gateway}/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert first.status == 200
        rotated = await first.json()
        assert rotated["principal"]["subject_id"] == "u-admin1"
        # Single use: the old refresh token is spent.
        await problem(
            await s.post(
                f"{gateway}/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
            ),
            401,
        )
        assert (
            await s.post(
                f"{gateway}/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]}
            )
        ).status == 204
        await problem(
            await s.post(
                f"{gateway}/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
            ),
            401,
        )


async def test_api_keys_authenticate_automation(gateway: str) -> None:
    async with ClientSession() as s:
        resp = await s.get(f"{gateway}/v1/tenants/t1/things", headers={"X-API-Key": API_KEY})
        assert (await resp.json())["by"] == "key-1"
        await problem(
            await s.get(f"{gateway}/v1/tenants/t2/things", headers={"X-API-Key": API_KEY}), 404
        )
        await problem(
            await s.get(f"{gateway}/v1/tenants/t1/things", headers={"X-API-Key": "rwk_wrong"}), 401
        )


async def test_the_openapi_document_is_served(gateway: str) -> None:
    async with ClientSession() as s:
        doc = await (await s.get(f"{gateway}/v1/openapi.json")).json()
        assert doc["openapi"] == "3.1.0"
        assert (
            doc["paths"]["/v1/tenants/{tenant_id}/things"]["post"]["x-ringwise-service"] == "things"
        )


async def test_a_service_nobody_serves_is_a_503_with_retry_after(gateway: str) -> None:
    async with ClientSession() as s:
        auth = await token_of(s, gateway, "admin@one.example")
        resp = await s.get(f"{gateway}/v1/tenants/t1/ghosts", headers=auth)
        await problem(resp, 503)
        assert resp.headers["Retry-After"] == "2"


async def test_a_reply_with_a_charset_passes_through(gateway: str) -> None:
    async with ClientSession() as s:
        auth = await token_of(s, gateway, "admin@one.example")
        resp = await s.get(
            f"{gateway}/v1/tenants/t1/users/u-admin1/things?format=csv", headers=auth
        )
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert await resp.text() == "id\n"
