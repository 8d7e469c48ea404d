"""Number operations: reserve, assign, activate, request deletion, release."""

from __future__ import annotations

from typing import Any

from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, not_found

from ringwise_directory.common.records import (
    Doc,
    check_if_match,
    created,
    listing,
    page_request,
    resource,
)
from ringwise_directory.common.validation import Fields, normalise_number, unprocessable
from ringwise_directory.history.store import actor_of
from ringwise_directory.numbers.domain import (
    ASSIGNMENT_TYPES,
    STATUSES,
    assignment_field,
    end_of_month,
    transition,
)
from ringwise_directory.stores import Stores


def router(stores: Stores) -> ApiRouter:
    api = ApiRouter()
    numbers = stores.numbers

    async def existing(call: ApiCall) -> Doc:
        doc = await numbers.get(call.tenant_id, normalise_number(call.param("number")))
        if doc is None:
            raise not_found("number")
        return doc

    async def check_assignment(tenant_id: str, assignment: dict[str, str] | None) -> None:
        if assignment is None:
            return
        kind, target = assignment["type"], assignment["id"]
        if kind == "user":
            found = bool(await stores.users.existing_ids(tenant_id, [target]))
        elif kind in ("team", "pool"):
            found = await stores.teams.exists(tenant_id, target, kind)
        else:  # IVRs are modelled in a later issue; the id is kept as given.
            found = True
        if not found:
            raise unprocessable(
                [{"field": "assignment/id", "message": f"no such {kind} in this tenant"}]
            )

    def number_body(body: Any, *, partial: bool) -> dict[str, Any]:
        fields = Fields(body, partial=partial)
        fields.reject_unknown(
            ("label", "assignment") if partial else ("number", "label", "assignment")
        )
        out: dict[str, Any] = {}
        if not partial:
            out["number"] = fields.e164("number", required=True)
        label = fields.text("label", max_len=60)
        if label is not None or (fields.has("label") and partial):
            out["label"] = label
        if fields.has("assignment"):
            out["assignment"] = assignment_field(fields)
        fields.check()
        return out

    @api.operation("reserveNumber")
    async def reserve_number(call: ApiCall) -> ApiResult:
        if await stores.tenants.get(call.tenant_id) is None:
            raise not_found("tenant")
        fields = number_body(call.json(), partial=False)
        await check_assignment(call.tenant_id, fields.get("assignment"))
        doc = await numbers.reserve(
            call.tenant_id, fields.pop("number"), fields, actor_of(call.principal)
        )
        return created(doc, f"/v1/tenants/{call.tenant_id}/numbers/{doc['number']}")

    @api.operation("listNumbers")
    async def list_numbers(call: ApiCall) -> ApiResult:
        page = page_request(call, ("number", "status", "created_at"), "number")
        query: Doc = {"tenant_id": call.tenant_id}
        errors = []
        status = call.query_one("status")
        if status:
            if status not in STATUSES:
                errors.append({"field": "status", "message": f"one of {', '.join(STATUSES)}"})
            query["status"] = status
        kind = call.query_one("assignment_type")
        if kind:
            if kind not in ASSIGNMENT_TYPES:
                errors.append(
                    {"field": "assignment_type", "message": f"one of {', '.join(ASSIGNMENT_TYPES)}"}
                )
            query["assignment.type"] = kind
        if call.query_one("assignment_id"):
            query["assignment.id"] = call.query_one("assignment_id")
        if errors:
            raise ApiError(400, "Bad Request", "invalid filters", errors=errors)
        docs, cursor = await numbers.page(query, page)
        return listing(docs, cursor)

    @api.operation("getNumber")
    async def get_number(call: ApiCall) -> ApiResult:
        return resource(await existing(call))

    @api.operation("updateNumber")
    async def update_number(call: ApiCall) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        changes = number_body(call.json(), partial=True)
        if "assignment" in changes:
            await check_assignment(call.tenant_id, changes["assignment"])
        updated = await numbers.update(current, changes, actor_of(call.principal), "number.updated")
        return resource(updated)

    async def move(call: ApiCall, action: str, extra: dict[str, Any]) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        target = transition(current.get("status", ""), action)
        if target is None:
            raise ApiError(
                409,
                "Conflict",
                f"cannot {action.replace('_', ' ')} a number that is {current.get('status')}",
                errors=[{"field": "status", "message": f"is {current.get('status')}"}],
            )
        updated = await numbers.update(
            current, {"status": target, **extra}, actor_of(call.principal), f"number.{action}"
        )
        return resource(updated)

    @api.operation("activateNumber")
    async def activate_number(call: ApiCall) -> ApiResult:
        now = stores.directory.now()
        return await move(call, "activate", {"activated_at": now, "expires_at": None})

    @api.operation("requestNumberDeletion")
    async def request_deletion(call: ApiCall) -> ApiResult:
        now = stores.directory.now()
        return await move(
            call,
            "request_deletion",
            {"deletion_requested_at": now, "deletion_due_at": end_of_month(now)},
        )

    @api.operation("cancelNumberDeletion")
    async def cancel_deletion(call: ApiCall) -> ApiResult:
        return await move(
            call, "cancel_deletion", {"deletion_requested_at": None, "deletion_due_at": None}
        )

    @api.operation("releaseNumber")
    async def release_number(call: ApiCall) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        if current.get("status") != "reserved":
            raise ApiError(
                409,
                "Conflict",
                "only a reserved number is released at once; request deletion of an active one",
                errors=[{"field": "status", "message": f"is {current.get('status')}"}],
            )
        if not await numbers.release(current, actor_of(call.principal), "released by the tenant"):
            raise ApiError(412, "Precondition Failed", "the number changed meanwhile; retry")
        return ApiResult(status=204)

    return api
