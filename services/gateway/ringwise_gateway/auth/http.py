"""The gateway's own operations: login, refresh, logout, whoami."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from ringwise.api.v1 import api_pb2
from ringwise_kit.api import ROLE_NAMES, ApiError

from ringwise_gateway.auth.identity import Identity, TokenPair
from ringwise_gateway.openapi.document import Operation

IDENTITY_KEY = web.AppKey("identity", Identity)


def principal_json(principal: api_pb2.Principal) -> dict[str, Any]:
    return {
        "subject_id": principal.subject_id,
        "tenant_id": principal.tenant_id or None,
        "role": ROLE_NAMES.get(principal.role, "unknown"),
        "email": principal.email,
        "auth_method": principal.auth_method,
    }


def pair_json(pair: TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token,
        "principal": principal_json(pair.principal),
    }


async def login(
    request: web.Request, op: Operation, principal: api_pb2.Principal | None, body: Any
) -> web.StreamResponse:
    pair = await request.app[IDENTITY_KEY].login(
        body["email"], body["password"], body.get("new_password", ""), request.remote or ""
    )
    return web.json_response(pair_json(pair), headers={"Cache-Control": "no-store"})


async def refresh(
    request: web.Request, op: Operation, principal: api_pb2.Principal | None, body: Any
) -> web.StreamResponse:
    pair = await request.app[IDENTITY_KEY].refresh(body["refresh_token"])
    return web.json_response(pair_json(pair), headers={"Cache-Control": "no-store"})


async def logout(
    request: web.Request, op: Operation, principal: api_pb2.Principal | None, body: Any
) -> web.StreamResponse:
    await request.app[IDENTITY_KEY].logout(body["refresh_token"])
    return web.Response(status=204)


async def who_am_i(
    request: web.Request, op: Operation, principal: api_pb2.Principal | None, body: Any
) -> web.StreamResponse:
    if principal is None:
        raise ApiError(401, "Unauthorized", "authentication required")
    return web.json_response(principal_json(principal))


LOCAL_OPERATIONS = {
    "login": login,
    "refreshToken": refresh,
    "logout": logout,
    "whoAmI": who_am_i,
}
