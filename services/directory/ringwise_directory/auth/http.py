"""API key operations (tenant admins). The key is shown once, at creation."""

from __future__ import annotations

from ringwise_kit.api import ApiCall, ApiResult, ApiRouter, not_found

from ringwise_directory.auth.domain import API_KEY_ROLES
from ringwise_directory.common.records import Doc, created, listing, page_request, resource
from ringwise_directory.common.validation import Fields
from ringwise_directory.history.store import actor_of
from ringwise_directory.stores import Stores

HIDDEN = ("key_hash",)


def router(stores: Stores) -> ApiRouter:
    api = ApiRouter()
    credentials = stores.credentials

    @api.operation("createApiKey")
    async def create_api_key(call: ApiCall) -> ApiResult:
        if await stores.tenants.get(call.tenant_id) is None:
            raise not_found("tenant")
        fields = Fields(call.json())
        fields.reject_unknown(("name", "role"))
        name = fields.text("name", required=True, max_len=80)
        role = fields.choice("role", API_KEY_ROLES, required=True)
        fields.check()
        doc, api_key = await credentials.create_key(
            call.tenant_id, {"name": name, "role": role}, actor_of(call.principal)
        )
        result = created(doc, f"/v1/tenants/{call.tenant_id}/api-keys/{doc['key_id']}", HIDDEN)
        result.body["api_key"] = api_key
        return result

    @api.operation("listApiKeys")
    async def list_api_keys(call: ApiCall) -> ApiResult:
        page = page_request(call, ("created_at", "name", "key_id"), "created_at")
        query: Doc = {"tenant_id": call.tenant_id}
        if call.query_one("revoked") == "false":
            query["revoked_at"] = None
        docs, cursor = await credentials.page_keys(query, page)
        return listing(docs, cursor, HIDDEN)

    @api.operation("revokeApiKey")
    async def revoke_api_key(call: ApiCall) -> ApiResult:
        doc = await credentials.get_key(call.tenant_id, call.param("key_id"))
        if doc is None:
            raise not_found("API key")
        return resource(await credentials.revoke_key(doc, actor_of(call.principal)), HIDDEN)

    return api
