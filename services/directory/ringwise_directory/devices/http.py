"""Device operations under a user; SIP passwords are returned once (create, reset)."""

from __future__ import annotations

from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, not_found

from ringwise_directory.common.records import (
    Doc,
    check_if_match,
    created,
    listing,
    page_request,
    resource,
)
from ringwise_directory.devices.domain import KINDS, device_fields
from ringwise_directory.devices.store import HIDDEN
from ringwise_directory.history.store import actor_of
from ringwise_directory.stores import Stores


def router(stores: Stores) -> ApiRouter:
    api = ApiRouter()
    devices = stores.devices

    async def owner(call: ApiCall) -> Doc:
        user = await stores.users.get(call.tenant_id, call.param("user_id"))
        if user is None:
            raise not_found("user")
        return user

    async def existing(call: ApiCall) -> Doc:
        user = await owner(call)
        doc = await devices.get(call.tenant_id, user["user_id"], call.param("device_id"))
        if doc is None:
            raise not_found("device")
        return doc

    @api.operation("createDevice")
    async def create_device(call: ApiCall) -> ApiResult:
        user = await owner(call)
        fields = device_fields(call.json(), partial=False)
        doc, password = await devices.create(
            call.tenant_id, user["user_id"], fields, actor_of(call.principal)
        )
        result = created(
            doc,
            f"/v1/tenants/{call.tenant_id}/users/{user['user_id']}/devices/{doc['device_id']}",
            HIDDEN,
        )
        if password is not None:
            result.body["sip_password"] = password
        return result

    @api.operation("listDevices")
    async def list_devices(call: ApiCall) -> ApiResult:
        user = await owner(call)
        page = page_request(call, ("position", "created_at", "device_id"), "position")
        query: Doc = {"tenant_id": call.tenant_id, "user_id": user["user_id"]}
        kind = call.query_one("kind")
        if kind:
            if kind not in KINDS:
                raise ApiError(
                    400,
                    "Bad Request",
                    "invalid filter",
                    errors=[{"field": "kind", "message": f"one of {', '.join(KINDS)}"}],
                )
            query["kind"] = kind
        docs, cursor = await devices.page(query, page)
        return listing(docs, cursor, HIDDEN)

    @api.operation("getDevice")
    async def get_device(call: ApiCall) -> ApiResult:
        return resource(await existing(call), HIDDEN)

    @api.operation("updateDevice")
    async def update_device(call: ApiCall) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        changes = device_fields(call.json(), partial=True, kind=current["kind"])
        changes.pop("kind", None)
        updated = await devices.update(current, changes, actor_of(call.principal), "device.updated")
        return resource(updated, HIDDEN)

    @api.operation("deleteDevice")
    async def delete_device(call: ApiCall) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        await devices.delete(current, actor_of(call.principal))
        return ApiResult(status=204)

    @api.operation("resetDevicePassword")
    async def reset_device_password(call: ApiCall) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        if current["kind"] != "sip_phone":
            raise ApiError(
                409,
                "Conflict",
                "only a SIP phone has a password",
                errors=[{"field": "kind", "message": f"is {current['kind']}"}],
            )
        updated, password = await devices.reset_password(current, actor_of(call.principal))
        result = resource(updated, HIDDEN)
        result.body["sip_password"] = password
        return result

    return api
