"""Schedule operations (tenant admins and supervisors)."""

from __future__ import annotations

from ringwise_kit.api import ApiCall, ApiResult, ApiRouter, not_found

from ringwise_directory.common.records import (
    Doc,
    check_if_match,
    created,
    duplicate,
    listing,
    page_request,
    resource,
)
from ringwise_directory.common.validation import unprocessable
from ringwise_directory.history.store import actor_of
from ringwise_directory.schedules.domain import schedule_fields
from ringwise_directory.stores import Stores

DUPLICATE = duplicate("this schedule", "schedule_id")


def router(stores: Stores) -> ApiRouter:
    api = ApiRouter()
    schedules = stores.schedules

    async def existing(call: ApiCall) -> Doc:
        doc = await schedules.get(call.tenant_id, call.param("schedule_id"))
        if doc is None:
            raise not_found("schedule")
        return doc

    async def check_user(tenant_id: str, fields: Doc) -> None:
        user_id = fields.get("user_id")
        if user_id and not await stores.users.existing_ids(tenant_id, [user_id]):
            raise unprocessable([{"field": "user_id", "message": "no such user in this tenant"}])

    @api.operation("createSchedule")
    async def create_schedule(call: ApiCall) -> ApiResult:
        fields = schedule_fields(call.json(), partial=False)
        await check_user(call.tenant_id, fields)
        doc = await schedules.create(
            call.tenant_id, fields, actor_of(call.principal), DUPLICATE, call.idempotency_key
        )
        return created(doc, f"/v1/tenants/{call.tenant_id}/schedules/{doc['schedule_id']}")

    @api.operation("listSchedules")
    async def list_schedules(call: ApiCall) -> ApiResult:
        page = page_request(call, ("name", "created_at", "schedule_id"), "name")
        query: Doc = {"tenant_id": call.tenant_id}
        if call.query_one("user_id"):
            query["user_id"] = call.query_one("user_id")
        docs, cursor = await schedules.page(query, page)
        return listing(docs, cursor)

    @api.operation("getSchedule")
    async def get_schedule(call: ApiCall) -> ApiResult:
        return resource(await existing(call))

    @api.operation("updateSchedule")
    async def update_schedule(call: ApiCall) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        changes = schedule_fields(call.json(), partial=True)
        await check_user(call.tenant_id, changes)
        return resource(await schedules.update(current, changes, actor_of(call.principal)))

    @api.operation("deleteSchedule")
    async def delete_schedule(call: ApiCall) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        await schedules.delete(current, actor_of(call.principal))
        return ApiResult(status=204)

    return api
