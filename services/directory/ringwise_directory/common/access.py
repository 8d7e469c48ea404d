"""Role rules taken from the features' OpenAPI fragments, enforced again inside the service.

The gateway enforces x-ringwise-roles and x-ringwise-self first; the directory re-checks them
from the very same api.yaml files, so the document and the behaviour cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ringwise.api.v1 import api_pb2
from ringwise_kit.api import (
    CROSS_TENANT_ROLES,
    ROLES_BY_NAME,
    ApiCall,
    ApiError,
    ApiResult,
    ApiRouter,
    Handler,
    role_may_call,
)

PACKAGE = Path(__file__).resolve().parent.parent
HTTP_METHODS = ("get", "put", "post", "patch", "delete")


@dataclass(frozen=True)
class Rule:
    operation_id: str
    method: str
    path: str
    roles: frozenset[int]
    self_param: str | None


def fragment_paths() -> list[Path]:
    return sorted(PACKAGE.glob("*/api.yaml"))


def load_rules(paths: Iterable[Path] | None = None) -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for path in paths or fragment_paths():
        document: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
        for route, item in (document.get("paths") or {}).items():
            for method in HTTP_METHODS:
                operation = item.get(method)
                if not operation:
                    continue
                op_id = operation["operationId"]
                roles = frozenset(ROLES_BY_NAME[name] for name in operation["x-ringwise-roles"])
                if op_id in rules:
                    raise ValueError(f"operationId {op_id} declared twice ({path})")
                rules[op_id] = Rule(op_id, method, route, roles, operation.get("x-ringwise-self"))
    return rules


def allowed(rule: Rule, call: ApiCall) -> bool:
    return role_may_call(call.principal, rule.roles, rule.self_param, call.path_params)


TenantExists = Callable[[str], Awaitable[bool]]


def guard(rule: Rule, handler: Handler, tenant_exists: TenantExists | None = None) -> Handler:
    async def guarded(call: ApiCall) -> ApiResult:
        if not allowed(rule, call):
            # A user probing another user's id learns nothing: same answer as a missing id.
            if call.role == api_pb2.ROLE_USER and rule.self_param:
                raise ApiError(404, "Not Found", "no such user")
            raise ApiError(403, "Forbidden", f"role may not call {rule.operation_id}")
        # Operators reach any tenant id in a path: it must name a tenant that exists (a
        # tenant-bound principal's own tenant always does).
        if (
            tenant_exists is not None
            and "{tenant_id}" in rule.path
            and call.role in CROSS_TENANT_ROLES
            and not await tenant_exists(call.tenant_id)
        ):
            raise ApiError(404, "Not Found", "no such tenant")
        return await handler(call)

    return guarded


def guarded_router(
    routers: Iterable[ApiRouter],
    rules: dict[str, Rule],
    tenant_exists: TenantExists | None = None,
) -> ApiRouter:
    """One router of every feature's handlers, each behind its documented role rule."""
    combined = ApiRouter()
    for router in routers:
        for op_id, handler in router.handlers.items():
            rule = rules.get(op_id)
            if rule is None:
                raise ValueError(f"handler {op_id} has no operation in any api.yaml")
            combined.operation(op_id)(guard(rule, handler, tenant_exists))
    missing = set(rules) - set(combined.handlers)
    if missing:
        raise ValueError(f"api.yaml operations without a handler: {', '.join(sorted(missing))}")
    return combined


def is_admin(call: ApiCall) -> bool:
    return call.role in CROSS_TENANT_ROLES or call.role == api_pb2.ROLE_TENANT_ADMIN


def is_self(call: ApiCall, user_id: str) -> bool:
    return call.role == api_pb2.ROLE_USER and call.principal.subject_id == user_id
