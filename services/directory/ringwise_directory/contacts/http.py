"""Contact operations and the directory search across users, teams and visible contacts."""

from __future__ import annotations

from typing import Any

from ringwise.api.v1 import api_pb2
from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, not_found

from ringwise_directory.common.access import is_admin
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
from ringwise_directory.contacts.domain import (
    can_edit,
    can_view,
    contact_fields,
    digits_pattern,
    scope_errors,
    search_pattern,
    visible_query,
)
from ringwise_directory.history.store import actor_of
from ringwise_directory.stores import Stores

DUPLICATE = duplicate("this contact", "contact_id")
SEARCH_LIMIT = 50


def _may_share_tenant_wide(call: ApiCall) -> bool:
    return is_admin(call) or call.role == api_pb2.ROLE_SUPERVISOR


def router(stores: Stores) -> ApiRouter:
    api = ApiRouter()
    contacts = stores.contacts

    def viewer(call: ApiCall) -> str:
        return call.principal.subject_id

    async def visible(call: ApiCall) -> Doc:
        doc = await contacts.get(call.tenant_id, call.param("contact_id"))
        if doc is None or not can_view(doc, viewer(call)):
            raise not_found("contact")
        return doc

    async def editable(call: ApiCall) -> Doc:
        doc = await visible(call)
        if not can_edit(doc, viewer(call), _may_share_tenant_wide(call)):
            raise ApiError(403, "Forbidden", "this contact is not editable by you")
        return doc

    @api.operation("createContact")
    async def create_contact(call: ApiCall) -> ApiResult:
        fields = contact_fields(call.json(), partial=False)
        if fields["scope"] == "tenant" and not _may_share_tenant_wide(call):
            raise ApiError(
                403,
                "Forbidden",
                "only administrators and supervisors add tenant-wide contacts",
                errors=[{"field": "scope", "message": "personal only for this role"}],
            )
        errors = scope_errors(fields)
        if errors:
            raise unprocessable(errors)
        fields["owner_id"] = viewer(call) if fields["scope"] == "personal" else None
        doc = await contacts.create(
            call.tenant_id, fields, actor_of(call.principal), DUPLICATE, call.idempotency_key
        )
        return created(doc, f"/v1/tenants/{call.tenant_id}/contacts/{doc['contact_id']}")

    @api.operation("listContacts")
    async def list_contacts(call: ApiCall) -> ApiResult:
        page = page_request(call, ("name", "created_at", "contact_id"), "name")
        query: Doc = visible_query(call.tenant_id, viewer(call))
        scope = call.query_one("scope")
        if scope == "mine":
            query["owner_id"] = viewer(call)
        elif scope:
            query["scope"] = scope
        if call.query_one("vip") in ("true", "false"):
            query["vip"] = call.query_one("vip") == "true"
        group = call.query_one("group")
        if group:
            query["groups"] = group
        docs, cursor = await contacts.page(query, page)
        return listing(docs, cursor)

    @api.operation("getContact")
    async def get_contact(call: ApiCall) -> ApiResult:
        return resource(await visible(call))

    @api.operation("updateContact")
    async def update_contact(call: ApiCall) -> ApiResult:
        current = await editable(call)
        check_if_match(call, int(current["version"]))
        changes = contact_fields(call.json(), partial=True)
        merged = {**current, **changes}
        errors = scope_errors(merged)
        # Only the owner (or an admin, for tenant-wide contacts) may change who sees a contact.
        if current.get("owner_id") != viewer(call) and not (
            current.get("scope") == "tenant" and _may_share_tenant_wide(call)
        ):
            errors += [
                {"field": name, "message": "only the owner changes this"}
                for name in ("visibility", "editable_by")
                if name in changes and changes[name] != current.get(name)
            ]
        if errors:
            raise unprocessable(errors)
        updated = await contacts.update(current, changes, actor_of(call.principal))
        return resource(updated)

    @api.operation("deleteContact")
    async def delete_contact(call: ApiCall) -> ApiResult:
        current = await editable(call)
        check_if_match(call, int(current["version"]))
        await contacts.delete(current, actor_of(call.principal))
        return ApiResult(status=204)

    @api.operation("searchDirectory")
    async def search_directory(call: ApiCall) -> ApiResult:
        text = (call.query_one("q") or "").strip()
        if not 1 <= len(text) <= 100:
            raise ApiError(
                400,
                "Bad Request",
                "q is required",
                errors=[{"field": "q", "message": "1 to 100 characters"}],
            )
        raw_limit = call.query_one("limit") or str(SEARCH_LIMIT)
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
            raise ApiError(
                400,
                "Bad Request",
                "bad limit",
                errors=[{"field": "limit", "message": "an integer from 1 to 200"}],
            )
        limit = int(raw_limit)
        pattern = search_pattern(text)
        digits = digits_pattern(text)
        db = stores.directory.db
        tenant = call.tenant_id

        user_terms: list[Doc] = [{"name": pattern}, {"email": pattern}]
        team_terms: list[Doc] = [{"name": pattern}]
        contact_terms: list[Doc] = [{"name": pattern}, {"company": pattern}]
        if digits is not None:
            user_terms += [{"extension": digits}, {"smartnumber": digits}]
            team_terms += [{"extension": digits}]
            contact_terms += [{"numbers.number": digits}]
        items: list[dict[str, Any]] = []
        for doc in (
            await db.users.find({"tenant_id": tenant, "status": "active", "$or": user_terms})
            .limit(limit)
            .to_list()
        ):
            items.append(
                {
                    "type": "user",
                    "id": doc["user_id"],
                    "name": doc.get("name", ""),
                    "email": doc.get("email"),
                    "extension": doc.get("extension"),
                    "numbers": [doc["smartnumber"]] if doc.get("smartnumber") else [],
                    "vip": False,
                    # No presence source yet (availability is a later issue): unknown.
                    "presence": None,
                }
            )
        for doc in (
            await db.teams.find({"tenant_id": tenant, "$or": team_terms}).limit(limit).to_list()
        ):
            items.append(
                {
                    "type": "team",
                    "id": doc["team_id"],
                    "name": doc.get("name", ""),
                    "email": doc.get("email"),
                    "extension": doc.get("extension"),
                    "numbers": [],
                    "vip": False,
                    "presence": None,
                }
            )
        contact_query = {"$and": [visible_query(tenant, viewer(call)), {"$or": contact_terms}]}
        for doc in await db.contacts.find(contact_query).limit(limit).to_list():
            items.append(
                {
                    "type": "contact",
                    "id": doc["contact_id"],
                    "name": doc.get("name", ""),
                    "email": doc.get("email"),
                    "extension": None,
                    "numbers": [n["number"] for n in doc.get("numbers", [])],
                    "vip": bool(doc.get("vip")),
                    "presence": None,
                }
            )
        items.sort(key=lambda item: (not item["vip"], str(item["name"]).lower(), item["id"]))
        return ApiResult(body={"items": items[:limit], "next_cursor": None})

    return api
