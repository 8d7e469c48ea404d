"""The service side of the gateway's REST forwarding (proto ringwise.api.v1).

The gateway authenticates, checks the role and the tenant scope, validates the body against the
OpenAPI document, then sends an ApiRequest to `ringwise.v1.api.<service>`. A service declares
its operations on an ApiRouter (one handler per OpenAPI operationId) and answers with JSON or an
RFC 9457 problem. A handler never crashes the service: unexpected errors become a 500 problem
with the request id, and are logged.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from ringwise.api.v1 import api_pb2

from ringwise_kit import subjects
from ringwise_kit.logs import get_logger
from ringwise_kit.problems import PROBLEM_CONTENT_TYPE, problem_body
from ringwise_kit.service import NATS_KEY, CleanupCtx

log = get_logger("ringwise_kit.api")

Role = api_pb2.Role
JSON = "application/json"
# Roles that are not bound to one tenant.
CROSS_TENANT_ROLES = frozenset({api_pb2.ROLE_OPERATOR_ADMIN, api_pb2.ROLE_SERVICE})
ROLE_NAMES: dict[api_pb2.Role.ValueType, str] = {
    api_pb2.ROLE_OPERATOR_ADMIN: "operator_admin",
    api_pb2.ROLE_TENANT_ADMIN: "tenant_admin",
    api_pb2.ROLE_SUPERVISOR: "supervisor",
    api_pb2.ROLE_USER: "user",
    api_pb2.ROLE_COMPLIANCE_OFFICER: "compliance_officer",
    api_pb2.ROLE_SERVICE: "service",
}
ROLES_BY_NAME = {name: role for role, name in ROLE_NAMES.items()}


def role_may_call(
    principal: api_pb2.Principal,
    roles: frozenset[int],
    self_param: str | None,
    path_params: dict[str, str],
) -> bool:
    """An operation's documented role rule (x-ringwise-roles, x-ringwise-self): operators and
    internal services always; the listed roles; role `user` only on its own {self_param},
    whether or not `user` is listed (listing it never opens other users' data).
    The gateway enforces it for every call; a service may check it again."""
    role = principal.role
    if role in CROSS_TENANT_ROLES:
        return True
    if role == api_pb2.ROLE_USER and self_param:
        return bool(principal.subject_id) and path_params.get(self_param) == principal.subject_id
    return role in roles


class ApiError(Exception):
    """An expected failure, answered as problem+json (4xx, or 503 when a dependency is down)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "Not Found", f"no such {what}")


def field_error(field_name: str, message: str, status: int = 422) -> ApiError:
    """One invalid field, in the same shape as the gateway's schema errors."""
    return ApiError(
        status,
        "Unprocessable Content" if status == 422 else "Bad Request",
        f"{field_name}: {message}",
        errors=[{"field": field_name, "message": message}],
    )


@dataclass(frozen=True)
class ApiCall:
    """One forwarded REST call, as a handler sees it."""

    operation: str
    principal: api_pb2.Principal
    path_params: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    request_id: str = ""
    if_match: str = ""
    idempotency_key: str = ""

    @classmethod
    def from_proto(cls, req: api_pb2.ApiRequest) -> ApiCall:
        return cls(
            operation=req.operation,
            principal=req.principal,
            path_params=dict(req.path_params),
            query=[(q.name, q.value) for q in req.query],
            body=req.body,
            request_id=req.request_id,
            if_match=req.if_match,
            idempotency_key=req.idempotency_key,
        )

    def to_proto(self) -> api_pb2.ApiRequest:
        return api_pb2.ApiRequest(
            operation=self.operation,
            principal=self.principal,
            path_params=self.path_params,
            query=[api_pb2.QueryParam(name=n, value=v) for n, v in self.query],
            body=self.body,
            request_id=self.request_id,
            if_match=self.if_match,
            idempotency_key=self.idempotency_key,
        )

    @property
    def tenant_id(self) -> str:
        """The tenant in the path (the gateway has already checked the caller may see it)."""
        return self.path_params.get("tenant_id", "")

    def param(self, name: str) -> str:
        try:
            return self.path_params[name]
        except KeyError:
            raise ApiError(400, "Bad Request", f"missing path parameter {name}") from None

    def query_one(self, name: str, default: str | None = None) -> str | None:
        values = self.query_all(name)
        return values[-1] if values else default

    def query_all(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]

    def json(self) -> Any:
        if not self.body:
            raise ApiError(400, "Bad Request", "a JSON body is required")
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, "Bad Request", f"the body is not valid JSON: {exc}") from None

    @property
    def role(self) -> int:
        return int(self.principal.role)


@dataclass
class ApiResult:
    status: int = 200
    body: Any = None
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[ApiCall], Awaitable[ApiResult]]


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return json.dumps(value, default=_default, separators=(",", ":")).encode()


def problem_reply(
    status: int,
    title: str,
    detail: str = "",
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> api_pb2.ApiReply:
    body = problem_body(status, title, detail, errors)
    return api_pb2.ApiReply(
        status=status, content_type=PROBLEM_CONTENT_TYPE, body=dumps(body), headers=headers or {}
    )


def to_reply(result: ApiResult) -> api_pb2.ApiReply:
    if isinstance(result.body, bytes):
        body = result.body
    elif result.body is None:
        body = b""
    else:
        body = dumps(result.body)
    return api_pb2.ApiReply(
        status=result.status, content_type=result.content_type, body=body, headers=result.headers
    )


class ApiRouter:
    """A service's operations, by OpenAPI operationId."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def operation(self, operation_id: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            if operation_id in self.handlers:
                raise ValueError(f"operation {operation_id} registered twice")
            self.handlers[operation_id] = handler
            return handler

        return register

    def include(self, other: ApiRouter) -> None:
        for operation_id, handler in other.handlers.items():
            self.operation(operation_id)(handler)

    async def dispatch(self, call: ApiCall) -> api_pb2.ApiReply:
        handler = self.handlers.get(call.operation)
        if handler is None:
            return problem_reply(404, "Not Found", f"unknown operation {call.operation}")
        # Defence in depth: the gateway scopes tenants; a service never serves another's data.
        if (
            call.tenant_id
            and call.role not in CROSS_TENANT_ROLES
            and call.principal.tenant_id != call.tenant_id
        ):
            return problem_reply(404, "Not Found", "no such tenant")
        try:
            return to_reply(await handler(call))
        except ApiError as exc:
            return problem_reply(exc.status, exc.title, exc.detail, exc.errors, exc.headers)
        except Exception:
            log.exception(
                "api_handler_failed", operation=call.operation, request_id=call.request_id
            )
            return problem_reply(
                500, "Internal Server Error", f"request {call.request_id or '-'} failed"
            )


async def serve_api(nc: NatsClient, service: str, router: ApiRouter) -> Any:
    """Answer the gateway's forwarded calls for this service (queue group = service)."""

    async def on_request(msg: Msg) -> None:
        req = api_pb2.ApiRequest()
        try:
            req.ParseFromString(msg.data)
        except Exception:
            reply = problem_reply(400, "Bad Request", "malformed ApiRequest")
        else:
            reply = await router.dispatch(ApiCall.from_proto(req))
        if msg.reply:
            await nc.publish(msg.reply, reply.SerializeToString())

    return await nc.subscribe(subjects.api(service), queue=service, cb=on_request)


async def call_service(
    nc: NatsClient, service: str, call: ApiCall, timeout_s: float = 5.0
) -> api_pb2.ApiReply:
    """Forward a call to a service (used by the gateway, and by tests and jobs)."""
    msg = await nc.request(
        subjects.api(service), call.to_proto().SerializeToString(), timeout=timeout_s
    )
    reply = api_pb2.ApiReply()
    reply.ParseFromString(msg.data)
    return reply


def api_ctx(service_name: str, router: ApiRouter) -> CleanupCtx:
    """cleanup_ctx: serve the router for the app's lifetime (append after nats_ctx)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        sub = await serve_api(app[NATS_KEY], service_name, router)
        yield
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

    return ctx


def new_request_id() -> str:
    return uuid.uuid4().hex


def service_principal(name: str) -> api_pb2.Principal:
    """The principal of an internal caller (a job, a test driving a service directly)."""
    return api_pb2.Principal(subject_id=f"service:{name}", role=api_pb2.ROLE_SERVICE)
