"""User operations: admins manage users; a user reads and edits their own profile."""

from __future__ import annotations

import asyncio
from typing import Any

from ringwise.api.v1 import api_pb2
from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, not_found

from ringwise_directory.common.records import (
    Doc,
    check_if_match,
    created,
    listing,
    page_request,
    resource,
)
from ringwise_directory.common.validation import Fields, unprocessable
from ringwise_directory.history.store import actor_of
from ringwise_directory.stores import Stores
from ringwise_directory.users import transfer
from ringwise_directory.users.domain import (
    STATUSES,
    TENANT_ROLES,
    caller_id_errors,
    email_key,
    user_fields,
)
from ringwise_directory.users.store import HIDDEN, RESOLVE_FIELDS


async def reference_errors(
    stores: Stores, tenant_id: str, user: Doc, changed: Doc | None = None
) -> list[dict[str, str]]:
    """Numbers must be the tenant's own; the extension must be free among users and teams.
    `user` is the record as it would be; only `changed` fields (default: all) are looked up."""
    errors = caller_id_errors(user)
    fresh = user if changed is None else changed
    wanted: list[tuple[str, str]] = []
    if fresh.get("smartnumber"):
        wanted.append(("smartnumber", fresh["smartnumber"]))
    for name in ("outbound_numbers", "allowed_clis"):
        wanted += [(f"{name}/{i}", n) for i, n in enumerate(fresh.get(name) or [])]
    held = await stores.numbers.tenant_numbers(tenant_id, [n for _, n in wanted])
    errors += [
        {"field": field, "message": "is not one of the tenant's numbers"}
        for field, number in wanted
        if number not in held
    ]
    extension = fresh.get("extension")
    if extension and await stores.teams.extension_taken(tenant_id, extension):
        errors.append({"field": "extension", "message": "a team already has this extension"})
    return errors


async def create_user_checked(
    stores: Stores, tenant_id: str, body: Any, actor: Doc, tenant_language: str | None = None
) -> tuple[Doc, str]:
    """createUser's checks and write (also used row by row by the CSV import)."""
    fields = user_fields(body, partial=False)
    if "language" not in fields:
        if tenant_language is None:
            tenant = await stores.tenants.get(tenant_id)
            tenant_language = (tenant or {}).get("language", "en")
        fields["language"] = tenant_language
    errors = await reference_errors(stores, tenant_id, fields)
    if fields.get("extension") and await stores.users.extension_taken(
        tenant_id, fields["extension"]
    ):
        errors.append({"field": "extension", "message": "another user has this extension"})
    if errors:
        raise unprocessable(errors)
    return await stores.users.create(tenant_id, fields, actor)


IMPORT_CONCURRENCY = 8


def router(stores: Stores) -> ApiRouter:
    api = ApiRouter()
    users = stores.users

    async def existing(call: ApiCall) -> Doc:
        doc = await users.get(call.tenant_id, call.param("user_id"))
        if doc is None:
            raise not_found("user")
        return doc

    @api.operation("createUser")
    async def create_user(call: ApiCall) -> ApiResult:
        if await stores.tenants.get(call.tenant_id) is None:
            raise not_found("tenant")
        doc, password = await create_user_checked(
            stores, call.tenant_id, call.json(), actor_of(call.principal)
        )
        result = created(doc, f"/v1/tenants/{call.tenant_id}/users/{doc['user_id']}", HIDDEN)
        result.body["temporary_password"] = password
        return result

    @api.operation("listUsers")
    async def list_users(call: ApiCall) -> ApiResult:
        page = page_request(call, ("name", "email", "extension", "created_at", "user_id"), "name")
        query: Doc = {"tenant_id": call.tenant_id}
        errors = []
        for name, choices in (("role", TENANT_ROLES), ("status", STATUSES)):
            value = call.query_one(name)
            if value:
                if value not in choices:
                    errors.append({"field": name, "message": f"one of {', '.join(choices)}"})
                query[name] = value
        if errors:
            raise ApiError(400, "Bad Request", "invalid filters", errors=errors)
        if call.query_one("extension"):
            query["extension"] = call.query_one("extension")
        if call.query_one("email"):
            query["email_key"] = email_key(call.query_one("email") or "")
        docs, cursor = await users.page(query, page)
        return listing(docs, cursor, HIDDEN)

    @api.operation("getUser")
    async def get_user(call: ApiCall) -> ApiResult:
        return resource(await existing(call), HIDDEN)

    @api.operation("updateUser")
    async def update_user(call: ApiCall) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        body = call.json()
        # The email is the username: it can be repeated (any case) but never changed.
        if isinstance(body, dict) and "email" in body:
            if not isinstance(body["email"], str) or email_key(body["email"]) != current.get(
                "email_key"
            ):
                raise unprocessable(
                    [{"field": "email", "message": "is the username and can never change"}]
                )
            body = {k: v for k, v in body.items() if k != "email"}
        self_service = call.role == api_pb2.ROLE_USER
        changes = user_fields(body, partial=True, self_service=self_service)
        if not self_service:
            errors = await reference_errors(stores, call.tenant_id, {**current, **changes}, changes)
            if (
                "extension" in changes
                and changes["extension"]
                and await users.extension_taken(
                    call.tenant_id, changes["extension"], current["user_id"]
                )
            ):
                errors.append({"field": "extension", "message": "another user has this extension"})
            if errors:
                raise unprocessable(errors)
        updated = await users.update(current, changes, actor_of(call.principal), "user.updated")
        if any(current.get(k) != updated.get(k) for k in RESOLVE_FIELDS):
            await stores.numbers.touch({"tenant_id": call.tenant_id, "user_id": current["user_id"]})
        if current.get("status") != updated.get("status"):
            await stores.devices.republish(call.tenant_id, current["user_id"])
        return resource(updated, HIDDEN)

    @api.operation("deleteUser")
    async def delete_user(call: ApiCall) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        actor = actor_of(call.principal)
        await stores.devices.delete_all_of_user(call.tenant_id, current["user_id"], actor)
        await stores.numbers.unassign(call.tenant_id, "user", current["user_id"], actor)
        await stores.teams.remove_member(call.tenant_id, current["user_id"], actor)
        if not await users.delete(current, actor):
            raise ApiError(412, "Precondition Failed", "the user changed meanwhile; retry")
        return ApiResult(status=204)

    @api.operation("resetUserPassword")
    async def reset_password(call: ApiCall) -> ApiResult:
        current = await existing(call)
        password = await users.credentials.set_temporary(current)
        await stores.directory.history.record(
            call.tenant_id,
            actor_of(call.principal),
            "user.password_reset",
            "user",
            current["user_id"],
        )
        return ApiResult(body={"user_id": current["user_id"], "temporary_password": password})

    return api


def transfer_router(stores: Stores) -> ApiRouter:
    """Export to CSV / Excel, import from CSV with a per-row report."""
    api = ApiRouter()

    @api.operation("exportUsers")
    async def export_users(call: ApiCall) -> ApiResult:
        fmt = call.query_one("format") or "xlsx"
        if fmt not in ("csv", "xlsx"):
            raise ApiError(
                400,
                "Bad Request",
                "unknown format",
                errors=[{"field": "format", "message": "csv or xlsx"}],
            )
        users = await stores.users.all(call.tenant_id)
        body = transfer.to_csv(users) if fmt == "csv" else transfer.to_xlsx(users)
        return ApiResult(
            body=body,
            content_type=transfer.CSV if fmt == "csv" else transfer.XLSX,
            headers={"Content-Disposition": f'attachment; filename="users-{call.tenant_id}.{fmt}"'},
        )

    @api.operation("importUsers")
    async def import_users(call: ApiCall) -> ApiResult:
        if await stores.tenants.get(call.tenant_id) is None:
            raise not_found("tenant")
        fields = Fields(call.json())
        fields.reject_unknown(("csv",))
        text = fields.text("csv", required=True, max_len=2_000_000)
        fields.check()
        try:
            parsed = transfer.parse_csv(text or "")
        except transfer.ImportFileError as exc:
            raise unprocessable([{"field": "csv", "message": str(exc)}]) from None
        actor = actor_of(call.principal)
        tenant = await stores.tenants.get(call.tenant_id) or {}
        created_rows: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = transfer.repeated_rows(parsed)
        refused = {e["row"] for e in errors}
        slots = asyncio.Semaphore(IMPORT_CONCURRENCY)

        async def import_row(row: int, body: dict[str, Any]) -> None:
            async with slots:
                try:
                    doc, password = await create_user_checked(
                        stores, call.tenant_id, body, actor, tenant.get("language", "en")
                    )
                except ApiError as exc:
                    errors.extend(
                        {"row": row, "field": e.get("field", ""), "message": e.get("message", "")}
                        for e in (exc.errors or [{"field": "", "message": exc.detail}])
                    )
                    return
            created_rows.append(
                {
                    "row": row,
                    "user_id": doc["user_id"],
                    "email": doc["email"],
                    "temporary_password": password,
                }
            )

        # Rows are independent once repeats within the file are refused: create them a few
        # at a time (a bulk import is many small writes).
        await asyncio.gather(*(import_row(row, body) for row, body in parsed if row not in refused))
        created_rows.sort(key=lambda r: int(r["row"]))
        errors.sort(key=lambda e: int(e["row"]))
        return ApiResult(body={"created": created_rows, "errors": errors})

    return api
