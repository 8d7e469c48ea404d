"""Team operations (tenant admins and supervisors manage teams)."""

from __future__ import annotations

from ringwise_kit.api import ApiCall, ApiResult, ApiRouter, not_found

from ringwise_directory.common.records import (
    Doc,
    bad_filter,
    check_if_match,
    created,
    duplicate,
    listing,
    page_request,
    resource,
)
from ringwise_directory.common.validation import unprocessable
from ringwise_directory.history.store import actor_of
from ringwise_directory.stores import Stores
from ringwise_directory.teams.domain import KINDS, team_fields

DUPLICATE = duplicate("a team with this extension", "extension")


def router(stores: Stores) -> ApiRouter:
    api = ApiRouter()
    teams = stores.teams

    async def existing(call: ApiCall) -> Doc:
        doc = await teams.get(call.tenant_id, call.param("team_id"))
        if doc is None:
            raise not_found("team")
        return doc

    async def check_refs(tenant_id: str, team: Doc, team_id: str = "") -> None:
        errors = []
        members = team.get("members") or []
        known = await stores.users.existing_ids(tenant_id, members)
        errors += [
            {"field": f"members/{i}", "message": "no such user in this tenant"}
            for i, member in enumerate(members)
            if member not in known
        ]
        extension = team.get("extension")
        if extension and await stores.users.extension_taken(tenant_id, extension):
            errors.append({"field": "extension", "message": "a user already has this extension"})
        if extension and await teams.extension_taken(tenant_id, extension, team_id):
            errors.append({"field": "extension", "message": "another team has this extension"})
        if errors:
            raise unprocessable(errors)

    @api.operation("createTeam")
    async def create_team(call: ApiCall) -> ApiResult:
        fields = team_fields(call.json(), partial=False)
        actor = actor_of(call.principal)
        # Under an Idempotency-Key the id is known up front: a retry must not find its own
        # first team "already holding" the extension.
        team_id = teams.new_record_id(call.tenant_id, actor, call.idempotency_key)
        await check_refs(call.tenant_id, fields, team_id)
        doc = await teams.create(
            call.tenant_id, fields, actor, DUPLICATE, call.idempotency_key, record_id=team_id
        )
        return created(doc, f"/v1/tenants/{call.tenant_id}/teams/{doc['team_id']}")

    @api.operation("listTeams")
    async def list_teams(call: ApiCall) -> ApiResult:
        page = page_request(call, ("name", "extension", "created_at", "team_id"), "name")
        query: Doc = {"tenant_id": call.tenant_id}
        kind = call.query_one("kind")
        if kind:
            if kind not in KINDS:
                raise bad_filter("kind", KINDS)
            query["kind"] = kind
        member = call.query_one("member")
        if member:
            query["members"] = member
        docs, cursor = await teams.page(query, page)
        return listing(docs, cursor)

    @api.operation("getTeam")
    async def get_team(call: ApiCall) -> ApiResult:
        return resource(await existing(call))

    @api.operation("updateTeam")
    async def update_team(call: ApiCall) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        changes = team_fields(call.json(), partial=True)
        await check_refs(call.tenant_id, changes, current["team_id"])
        updated = await teams.update(current, changes, actor_of(call.principal), DUPLICATE)
        return resource(updated)

    @api.operation("deleteTeam")
    async def delete_team(call: ApiCall) -> ApiResult:
        current = await existing(call)
        check_if_match(call, int(current["version"]))
        actor = actor_of(call.principal)
        await stores.numbers.unassign(
            call.tenant_id, current.get("kind", "team"), current["team_id"], actor
        )
        await teams.delete(current, actor)
        return ApiResult(status=204)

    return api
