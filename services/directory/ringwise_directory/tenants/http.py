"""Tenant operations (operator admins; a tenant's own admins may read their tenant)."""

from __future__ import annotations

from ringwise_kit.api import ApiCall, ApiResult, ApiRouter, not_found

from ringwise_directory.common.records import (
    Doc,
    bad_filter,
    check_if_match,
    created,
    listing,
    page_request,
    resource,
)
from ringwise_directory.history.store import actor_of
from ringwise_directory.stores import Stores
from ringwise_directory.tenants.domain import STATUSES, tenant_fields


def router(stores: Stores) -> ApiRouter:
    api = ApiRouter()
    tenants = stores.tenants

    async def existing(call: ApiCall) -> Doc:
        doc = await tenants.get(call.tenant_id)
        if doc is None:
            raise not_found("tenant")
        return doc

    @api.operation("createTenant")
    async def create_tenant(call: ApiCall) -> ApiResult:
        doc = await tenants.create(
            tenant_fields(call.json(), partial=False), actor_of(call.principal)
        )
        return created(doc, f"/v1/tenants/{doc['tenant_id']}")

    @api.operation("listTenants")
    async def list_tenants(call: ApiCall) -> ApiResult:
        page = page_request(call, ("tenant_id", "name", "created_at"), "tenant_id")
        query: Doc = {}
        status = call.query_one("status")
        if status:
            if status not in STATUSES:
                raise bad_filter("status", STATUSES)
            query["status"] = status
        country = call.query_one("country")
        if country:
            query["country"] = country
        docs, cursor = await tenants.page(query, page)
        return listing(docs, cursor)

    @api.operation("getTenant")
    async def get_tenant(call: ApiCall) -> ApiResult:
        return resource(await existing(call))

    @api.operation("updateTenant")
    async def update_tenant(call: ApiCall) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        changes = tenant_fields(call.json(), partial=True)
        updated = await tenants.update(current, changes, actor_of(call.principal), "tenant.updated")
        return resource(updated)

    async def set_status(call: ApiCall, status: str) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        if current.get("status") == status:
            return resource(current)
        updated = await tenants.update(
            current, {"status": status}, actor_of(call.principal), f"tenant.{status}"
        )
        # Numbers of a suspended tenant reach nobody: routing must drop its cached answers.
        await stores.numbers.touch({"tenant_id": call.tenant_id})
        # ...and their phones stop (or start again) registering.
        await stores.devices.republish(call.tenant_id)
        return resource(updated)

    @api.operation("suspendTenant")
    async def suspend_tenant(call: ApiCall) -> ApiResult:
        return await set_status(call, "suspended")

    @api.operation("activateTenant")
    async def activate_tenant(call: ApiCall) -> ApiResult:
        return await set_status(call, "active")

    return api
