"""POST/GET .../users/{user_id}/calls (api.yaml): click-to-dial. Everything that can be
refused is refused here, before anything rings: the user (404), the target (the outbound
plan's Reject: 422; an extension nobody has: 422), a terminal to ring (409), ARI or the
directory down (503)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ringwise.directory.v1 import resolve_pb2
from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, not_found

from ringwise_routing.calls import policy
from ringwise_routing.calls.router import CallRouter
from ringwise_routing.calls.user_lookup import UserLookup
from ringwise_routing.click_to_dial.decide import (
    NoTerminal,
    callback_plan,
    refusal_detail,
    user_terminal,
)
from ringwise_routing.click_to_dial.status import CallStatusStore
from ringwise_routing.plans.engine import Reject
from ringwise_routing.plans.outbound import Connect, NumberClass, plan_outbound
from ringwise_routing.profiles.service import DirectoryUnavailable, StoredProfiles

MAX_TO_LENGTH = 32


def field_problem(status: int, title: str, field: str, message: str) -> ApiError:
    return ApiError(status, title, message, errors=[{"field": field, "message": message}])


def parse_body(body: Any) -> tuple[str, str | None]:
    """(to, from_terminal) of a request body; 400/422 for anything else."""
    if not isinstance(body, dict):
        raise ApiError(400, "Bad Request", "the body must be a JSON object")
    to = body.get("to")
    if not isinstance(to, str) or not to.strip() or len(to) > MAX_TO_LENGTH:
        raise field_problem(422, "Unprocessable Content", "to", "a number or an extension")
    terminal = body.get("from_terminal")
    if terminal is not None and (not isinstance(terminal, str) or not terminal):
        raise field_problem(422, "Unprocessable Content", "from_terminal", "a terminal id")
    return to.strip(), terminal


def unavailable(what: str) -> ApiError:
    return ApiError(503, "Service Unavailable", f"{what} did not answer; try again")


def routes(
    profiles: StoredProfiles,
    users: UserLookup,
    status: CallStatusStore,
    router: Callable[[], CallRouter | None],
) -> ApiRouter:
    api = ApiRouter()

    @api.operation("placeCall")
    async def place_call(call: ApiCall) -> ApiResult:
        to, from_terminal = parse_body(call.json())
        calls = router()
        if calls is None or not calls.ari_connected:
            raise unavailable("Asterisk")
        try:
            user = await profiles.resolve_user(call.tenant_id, call.param("user_id"))
        except DirectoryUnavailable:
            raise unavailable("the directory") from None
        if user is None:
            raise not_found("user")
        try:
            routing = await profiles.routing_for(user)
        except Exception:  # the profile store cannot be read at all
            raise unavailable("the routing store") from None
        plan = callback_plan(plan_outbound(routing.outbound, routing.dialling, to))
        if isinstance(plan.steps[-1], Reject):
            raise field_problem(422, "Unprocessable Content", "to", refusal_detail(plan))
        connect = plan.steps[-1]
        if isinstance(connect, Connect) and connect.number_class is NumberClass.EXTENSION:
            callee = await users.by_extension(user.tenant_id, connect.destination)
            if isinstance(callee, policy.LookupFailed):
                raise unavailable("the directory")
            if callee.status != resolve_pb2.ResolveNumberReply.STATUS_FOUND:
                raise field_problem(422, "Unprocessable Content", "to", "no such extension")
            if callee.user_id == user.user_id:
                raise field_problem(422, "Unprocessable Content", "to", "the user's own extension")
        terminal = user_terminal(routing.profile, datetime.now(UTC), from_terminal)
        if isinstance(terminal, NoTerminal):
            if terminal.kind == "unknown":
                raise field_problem(422, "Unprocessable Content", "from_terminal", terminal.detail)
            raise ApiError(409, "Conflict", terminal.detail)
        call_id = uuid.uuid4().hex
        try:
            state = await status.create(
                user.tenant_id, user.user_id, call_id, to, terminal.terminal_id
            )
        except Exception:  # Redis: without the status the call could not be followed
            raise unavailable("the call state store") from None
        started = calls.start_callback(
            call_id=call_id,
            user=user,
            routing=routing,
            plan=plan,
            terminal=terminal,
            dialled=to,
            status=status,
        )
        if not started:
            raise unavailable("call handling")
        return ApiResult(status=202, body=state)

    @api.operation("getCall")
    async def get_call(call: ApiCall) -> ApiResult:
        try:
            state = await status.get(call.tenant_id, call.param("call_id"))
        except Exception:
            raise unavailable("the call state store") from None
        if state is None or state.get("user_id") != call.param("user_id"):
            raise not_found("call")
        return ApiResult(body=state)

    return api
