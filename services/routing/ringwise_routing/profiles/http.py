"""The routing REST operations (profiles/api.yaml): a user's routing profile, their
availability and location, explain, and the tenant's routing policy.

The user must exist in the directory (resolve_user; 404 otherwise, 503 when the directory
does not answer). ETags are the stored version ("0" = nothing stored: the default applies).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import PyMongoError
from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, Handler, not_found
from ringwise_kit.logs import get_logger

from ringwise_routing.plans import changes
from ringwise_routing.plans.engine import normalize_number
from ringwise_routing.plans.explain import explain
from ringwise_routing.plans.model import Caller, PlanContext, RoutingProfile
from ringwise_routing.plans.validation import FieldError
from ringwise_routing.profiles import document
from ringwise_routing.profiles.document import Doc, DocumentInvalid
from ringwise_routing.profiles.service import Changed, DirectoryUnavailable, StoredProfiles
from ringwise_routing.profiles.source import UserReply
from ringwise_routing.profiles.store import Stored, VersionConflict

log = get_logger(__name__)

# Writes without If-Match retry this often when another write lands in between.
WRITE_ATTEMPTS = 3


def etag(version: int) -> str:
    return f'"{version}"'


def if_match_version(call: ApiCall) -> int | None:
    """The version named by If-Match (None when absent). A value that is no ETag of ours can
    match nothing: 412."""
    value = call.if_match.strip()
    if not value:
        return None
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise stale()
    return int(value)


def actor(call: ApiCall) -> str:
    return call.principal.subject_id


def stale() -> ApiError:
    return ApiError(412, "Precondition Failed", "the routing settings changed meanwhile")


def unprocessable(errors: list[FieldError], detail: str) -> ApiError:
    return ApiError(
        422,
        "Unprocessable Content",
        detail,
        errors=[{"field": e.field, "message": e.message} for e in errors],
    )


def profile_body(
    user: UserReply, stored_doc: Doc | None, version: int, trunk: document.TrunkDial
) -> Doc:
    doc = stored_doc or document.default_document(user, trunk)
    return {
        "tenant_id": user.tenant_id,
        "user_id": user.user_id,
        "version": version,
        "stored": stored_doc is not None,
        **document.public_profile(doc, user, trunk),
    }


def routes(profiles: StoredProfiles) -> ApiRouter:
    router = ApiRouter()
    trunk = profiles.trunk_dial

    async def user_of(call: ApiCall) -> UserReply:
        try:
            user = await profiles.resolve_user(call.tenant_id, call.param("user_id"))
        except DirectoryUnavailable:
            raise ApiError(503, "Service Unavailable", "the directory did not answer") from None
        if user is None:
            raise not_found("user")
        return user

    def reply(user: UserReply, doc: Doc | None, version: int) -> ApiResult:
        return ApiResult(
            body=profile_body(user, doc, version, trunk), headers={"ETag": etag(version)}
        )

    async def write(
        call: ApiCall, attempt: Callable[[UserReply, int | None], Awaitable[Changed]]
    ) -> ApiResult:
        """Run one read-modify-write; without If-Match a concurrent write is retried."""
        user = await user_of(call)
        wanted = if_match_version(call)
        for _ in range(WRITE_ATTEMPTS):
            try:
                changed = await attempt(user, wanted)
            except DocumentInvalid as exc:
                raise unprocessable(exc.errors, "the routing profile is not valid") from None
            except VersionConflict:
                if wanted is not None:
                    raise stale() from None
                continue
            return reply(user, changed.doc, changed.version)
        raise ApiError(409, "Conflict", "the routing profile kept changing; try again")

    def change_operation(
        make: Callable[[ApiCall], Callable[[RoutingProfile], RoutingProfile]],
    ) -> Callable[[ApiCall], Awaitable[ApiResult]]:
        """An operation applying one plans/changes.py function to the stored profile."""

        async def handler(call: ApiCall) -> ApiResult:
            change = make(call)

            async def attempt(user: UserReply, wanted: int | None) -> Changed:
                return await profiles.apply(
                    user, change, origin="api", if_version=wanted, actor=actor(call)
                )

            return await write(call, attempt)

        return handler

    @router.operation("getRoutingProfile")
    async def get_profile(call: ApiCall) -> ApiResult:
        user = await user_of(call)
        stored = await profiles.stored_profile(user.tenant_id, user.user_id)
        return reply(user, stored.doc, stored.version)

    @router.operation("putRoutingProfile")
    async def put_profile(call: ApiCall) -> ApiResult:
        body = call.json()

        async def attempt(user: UserReply, wanted: int | None) -> Changed:
            stored = await profiles.stored_profile(user.tenant_id, user.user_id)
            if wanted is not None and wanted != stored.version:
                raise VersionConflict("stale If-Match")
            # argon2 takes ~40 ms per secret: off the event loop, which carries calls too.
            doc = await asyncio.to_thread(document.parse_profile, body, stored.doc)
            return await profiles.save(user, doc, stored.version, origin="api", actor=actor(call))

        return await write(call, attempt)

    @router.operation("deleteRoutingProfile")
    async def delete_profile(call: ApiCall) -> ApiResult:
        user = await user_of(call)
        wanted = if_match_version(call)
        stored = await profiles.stored_profile(user.tenant_id, user.user_id)
        if wanted is not None and wanted != stored.version:
            raise stale()
        if stored.doc is not None:
            try:
                await profiles.remove(user, stored.version, origin="api", actor=actor(call))
            except VersionConflict:
                raise stale() from None
        return ApiResult(status=204)

    def availability(call: ApiCall) -> Callable[[RoutingProfile], RoutingProfile]:
        body = _object(call.json())
        state = body.get("state")
        if not isinstance(state, str) or not document.STATE_NAME.match(state):
            raise unprocessable([FieldError("state", "a state name")], "no such state")
        until = None
        if body.get("until") is not None:
            until = document.parse_instant(body["until"])
            if until is None:
                raise unprocessable(
                    [FieldError("until", "an ISO 8601 date-time with a zone")], "bad time"
                )
        return lambda profile: _applied(changes.set_state(profile, state, until))

    def location(call: ApiCall) -> Callable[[RoutingProfile], RoutingProfile]:
        body = _object(call.json())
        action = body.get("action")
        if action == "log_out":
            return changes.log_out
        if action == "log_in":
            return changes.log_in
        if action != "temp":
            raise unprocessable(
                [FieldError("action", "one of log_out, log_in, temp")], "unknown action"
            )
        number = body.get("number")
        timeout = body.get("ring_timeout_s", 30)
        errors = []
        if not isinstance(number, str) or not document.E164.match(normalize_number(number)):
            errors.append(FieldError("number", "a full international number (+...)"))
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 5 <= timeout <= 120:
            errors.append(FieldError("ring_timeout_s", "a whole number 5..120"))
        if errors:
            raise unprocessable(errors, "bad temporary location")
        return lambda profile: _applied(
            changes.set_temporary_location(profile, str(number), ring_timeout_s=int(timeout))
        )

    router.operation("putRoutingAvailability")(change_operation(availability))
    router.operation("deleteRoutingAvailability")(
        change_operation(lambda _call: changes.follow_schedule)
    )
    router.operation("putRoutingLocation")(change_operation(location))
    router.operation("deleteRoutingLocation")(
        change_operation(lambda _call: changes.clear_temporary_location)
    )

    @router.operation("explainRouting")
    async def explain_routing(call: ApiCall) -> ApiResult:
        at = datetime.now(UTC)
        at_text = call.query_one("at")
        if at_text:
            parsed = document.parse_instant(at_text)
            if parsed is None:
                raise ApiError(
                    400,
                    "Bad Request",
                    "at: an ISO 8601 date-time with a zone",
                    errors=[{"field": "at", "message": "an ISO 8601 date-time with a zone"}],
                )
            at = parsed
        number = normalize_number(call.query_one("caller") or "")
        user = await user_of(call)
        stored = await profiles.stored_profile(user.tenant_id, user.user_id)
        policy = await profiles.stored_policy(user.tenant_id)
        routing = document.user_routing(user, stored.doc, policy.doc, trunk)
        internal = await profiles.internal_caller(user.tenant_id, number) if number else None
        caller = Caller(number or None, internal_user_id=internal)
        body = explain(routing.profile, caller, at, PlanContext(tenant=routing.tenant))
        body["caller"]["user_id"] = internal  # a user of the tenant: an internal call
        for step in body["steps"]:
            for leg in step.get("legs", ()):
                # Dial strings are Asterisk's business (endpoint names, the trunk's address).
                leg.pop("dial_string", None)
        return ApiResult(body=body)

    def policy_reply(tenant_id: str, stored: Stored) -> ApiResult:
        doc = stored.doc or document.default_policy_document()
        return ApiResult(
            body={"tenant_id": tenant_id, "version": stored.version, **doc},
            headers={"ETag": etag(stored.version)},
        )

    @router.operation("getRoutingPolicy")
    async def get_policy(call: ApiCall) -> ApiResult:
        return policy_reply(call.tenant_id, await profiles.stored_policy(call.tenant_id))

    @router.operation("putRoutingPolicy")
    async def put_policy(call: ApiCall) -> ApiResult:
        try:
            doc = document.parse_policy(call.json())
        except DocumentInvalid as exc:
            raise unprocessable(exc.errors, "the routing policy is not valid") from None
        wanted = if_match_version(call)
        for _ in range(WRITE_ATTEMPTS):
            stored = await profiles.stored_policy(call.tenant_id)
            if wanted is not None and wanted != stored.version:
                raise stale()
            try:
                version = await profiles.save_policy(
                    call.tenant_id, doc, stored.version, origin="api", actor=actor(call)
                )
            except DocumentInvalid as exc:
                raise unprocessable(exc.errors, "the routing policy is not valid") from None
            except VersionConflict:
                if wanted is not None:
                    raise stale() from None
                continue
            return policy_reply(call.tenant_id, Stored(doc, version))
        raise ApiError(409, "Conflict", "the routing policy kept changing; try again")

    for operation_id, handler in list(router.handlers.items()):
        router.handlers[operation_id] = _unavailable_as_503(handler)
    return router


def _unavailable_as_503(handler: Handler) -> Handler:
    """A store or directory that does not answer is a 503 the client may retry, not a 500."""

    async def guarded(call: ApiCall) -> ApiResult:
        try:
            return await handler(call)
        except PyMongoError as exc:
            log.warning("routing_store_unavailable", operation=call.operation, error=repr(exc))
            raise ApiError(503, "Service Unavailable", "the routing store did not answer") from None
        except DirectoryUnavailable:
            raise ApiError(503, "Service Unavailable", "the directory did not answer") from None

    return guarded


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "Bad Request", "the body must be a JSON object")
    return body


def _applied(result: RoutingProfile | list[FieldError]) -> RoutingProfile:
    """A plans/changes.py result: the new profile, or its field errors raised (422)."""
    if isinstance(result, list):
        raise DocumentInvalid(result)
    return result
