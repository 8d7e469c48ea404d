"""The audit history, newest first: a tenant's (GET /v1/tenants/{tenant_id}/history) and the
platform's own (GET /v1/auth/history, operators)."""

from __future__ import annotations

from datetime import datetime

from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter

from ringwise_directory.common.records import Doc, listing, page_request
from ringwise_directory.stores import Stores


def router(stores: Stores) -> ApiRouter:
    api = ApiRouter()

    @api.operation("listHistory")
    async def list_history(call: ApiCall) -> ApiResult:
        return await entries(call, call.tenant_id)

    @api.operation("listPlatformHistory")
    async def list_platform_history(call: ApiCall) -> ApiResult:
        # Entries of no tenant: operator admins created, logins with unknown usernames.
        return await entries(call, "")

    async def entries(call: ApiCall, tenant_id: str) -> ApiResult:
        page = page_request(call, ("entry_id",), "-entry_id")
        query: Doc = {"tenant_id": tenant_id}
        for name, key in (
            ("resource_type", "resource_type"),
            ("resource_id", "resource_id"),
            ("action", "action"),
            ("actor_id", "actor.id"),
        ):
            value = call.query_one(name)
            if value:
                query[key] = value
        errors = []
        bounds: Doc = {}
        for name, op in (("since", "$gte"), ("until", "$lt")):
            raw = call.query_one(name)
            if raw:
                try:
                    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
                    if moment.tzinfo is None:
                        raise ValueError("no time zone")
                    bounds[op] = moment
                except ValueError:
                    errors.append({"field": name, "message": "an ISO 8601 time with zone"})
        if errors:
            raise ApiError(400, "Bad Request", "invalid filters", errors=errors)
        if bounds:
            query["at"] = bounds
        docs, cursor = await stores.directory.history.page(query, page)
        return listing(docs, cursor)

    return api
