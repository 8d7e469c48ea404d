"""One aiohttp route per OpenAPI operation: authenticate, authorise, scope, validate, forward.

This is the one place where roles and tenant scope are enforced for every operation of every
service: a caller outside the operation's roles gets 403, a caller of another tenant gets 404
(the resource's existence is not revealed), whatever the handler behind it does.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from aiohttp import web
from nats.aio.client import Client as NatsClient
from ringwise.api.v1 import api_pb2
from ringwise_kit.api import (
    CROSS_TENANT_ROLES,
    JSON,
    ROLE_NAMES,
    ApiCall,
    ApiError,
    call_service,
    new_request_id,
    problem_reply,
    role_may_call,
)

from ringwise_gateway.auth.identity import Identity, unauthorized
from ringwise_gateway.forwarding.idempotency import IdempotencyStore, fingerprint
from ringwise_gateway.openapi.document import Operation

LocalHandler = Callable[
    [web.Request, Operation, api_pb2.Principal | None, Any], Awaitable[web.StreamResponse]
]

REQUEST_ID_KEY = web.RequestKey("request_id", str)


async def principal_of(request: web.Request, identity: Identity) -> api_pb2.Principal:
    header = request.headers.get("Authorization", "")
    api_key = request.headers.get("X-API-Key", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("use Authorization: Bearer <token>")
        return await identity.principal_from_bearer(token.strip())
    if api_key:
        return await identity.principal_from_api_key(api_key)
    raise unauthorized("authentication required")


def authorise(op: Operation, principal: api_pb2.Principal, path: dict[str, str]) -> None:
    role = principal.role
    in_scope = path.get("tenant_id") == principal.tenant_id
    if op.tenant_scoped and role not in CROSS_TENANT_ROLES and not in_scope:
        raise ApiError(404, "Not Found", "no such resource")
    if role_may_call(principal, op.roles, op.self_param, path):
        return
    if op.self_param and role == api_pb2.ROLE_USER:
        # Another user's resource: as if it did not exist.
        raise ApiError(404, "Not Found", "no such resource")
    name = ROLE_NAMES.get(role, "unknown")
    raise ApiError(403, "Forbidden", f"role {name} may not {op.operation_id}")


async def read_body(request: web.Request, op: Operation) -> tuple[bytes, Any]:
    """The raw body, and the parsed JSON when the body is JSON."""
    raw = await request.read()
    if not raw:
        if op.body_required:
            raise ApiError(
                400,
                "Bad Request",
                "a request body is required",
                errors=[{"field": "body", "message": "is required"}],
            )
        return b"", None
    media = request.content_type
    if op.body_media and media not in op.body_media:
        raise ApiError(
            415, "Unsupported Media Type", f"send one of: {', '.join(sorted(op.body_media))}"
        )
    if not op.body_media:
        raise ApiError(400, "Bad Request", "this operation takes no request body")
    if media != JSON:
        return raw, None
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise ApiError(
            400,
            "Bad Request",
            f"the body is not valid JSON: {exc}",
            errors=[{"field": "body", "message": "invalid JSON"}],
        ) from None
    return raw, parsed


def validate(op: Operation, request: web.Request, parsed_body: Any, raw: bytes) -> None:
    _, errors = op.validate_parameters(dict(request.match_info), list(request.query.items()))
    if raw and request.content_type == JSON:
        errors.extend(op.validate_body(parsed_body))
    if errors:
        raise ApiError(
            422 if raw and not any(e.field.startswith(("query", "path")) for e in errors) else 400,
            "Unprocessable Content" if raw else "Bad Request",
            f"{len(errors)} invalid field(s): "
            + "; ".join(f"{e.field}: {e.message}" for e in errors[:3]),
            errors=[e.as_dict() for e in errors],
        )


def to_response(reply: api_pb2.ApiReply) -> web.Response:
    # Content-Type as the service gave it, parameters (charset) included.
    headers = {**reply.headers, "Content-Type": reply.content_type or JSON}
    return web.Response(status=reply.status or 500, body=reply.body, headers=headers)


def forwarding_handler(
    op: Operation,
    nc_of: Callable[[], NatsClient],
    identity_of: Callable[[], Identity],
    idempotency_of: Callable[[], IdempotencyStore],
    timeout_s: float,
    local: LocalHandler | None = None,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        principal = None if op.public else await principal_of(request, identity_of())
        path = dict(request.match_info)
        if principal is not None:
            authorise(op, principal, path)
        raw, parsed = await read_body(request, op)
        validate(op, request, parsed, raw)
        if local is not None:
            return await local(request, op, principal, parsed)
        assert principal is not None
        call = ApiCall(
            operation=op.operation_id,
            principal=principal,
            path_params=path,
            query=list(request.query.items()),
            body=raw,
            request_id=request.get(REQUEST_ID_KEY, "") or new_request_id(),
            if_match=request.headers.get("If-Match", ""),
            idempotency_key=request.headers.get("Idempotency-Key", ""),
        )
        claim = None
        if op.method == "POST" and call.idempotency_key:
            claim, replay = await idempotency_of().begin(
                principal.subject_id,
                call.idempotency_key,
                fingerprint(op.operation_id, request.path, raw),
            )
            if replay is not None:
                return to_response(replay)
        try:
            reply = await forward(nc_of(), op.service, call, op.timeout_s or timeout_s)
        except BaseException:
            if claim is not None:
                await idempotency_of().abandon(claim)
            raise
        if claim is not None:
            await idempotency_of().finish(claim, reply)
        return to_response(reply)

    return handle


async def forward(
    nc: NatsClient, service: str, call: ApiCall, timeout_s: float
) -> api_pb2.ApiReply:
    try:
        return await call_service(nc, service, call, timeout_s)
    except nats.errors.NoRespondersError:
        return problem_reply(
            503,
            "Service Unavailable",
            f"the {service} service is not available, retry shortly",
            headers={"Retry-After": "2"},
        )
    except nats.errors.TimeoutError:
        return problem_reply(
            504,
            "Gateway Timeout",
            f"the {service} service did not answer in time",
        )
