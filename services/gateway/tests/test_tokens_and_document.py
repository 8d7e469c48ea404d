"""Pure parts of the gateway: tokens, the operation table, the fragment merge, authorisation."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from ringwise.api.v1 import api_pb2
from ringwise_gateway.auth import tokens
from ringwise_gateway.forwarding.http import authorise
from ringwise_gateway.openapi.document import OpenApiDocument
from ringwise_gateway.openapi.merge import FragmentError, merge
from ringwise_kit.api import ApiError

KEY = "k" * 40
NOW = 1_800_000_000


def principal(role: int = api_pb2.ROLE_TENANT_ADMIN, tenant: str = "t1", sub: str = "u1") -> Any:
    return api_pb2.Principal(subject_id=sub, tenant_id=tenant, role=role, email="a@example.com")  # type: ignore[arg-type]


def test_access_token_round_trip_and_expiry() -> None:
    token = tokens.issue_access(principal(), KEY, NOW, 900)
    assert tokens.verify_access(token, KEY, NOW + 899) == principal()
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify_access(token, KEY, NOW + 900)


def test_forged_or_wrong_kind_tokens_are_refused() -> None:
    token = tokens.issue_access(principal(), KEY, NOW, 900)
    with pytest.raises(tokens.TokenError):
        tokens.verify_access(token, "x" * 40, NOW)
    with pytest.raises(tokens.TokenError):
        tokens.verify_access(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), KEY, NOW)
    refresh, _ = tokens.issue_refresh("u1", KEY, NOW, 3600)
    with pytest.raises(tokens.TokenError, match="not an access token"):
        tokens.verify_access(refresh, KEY, NOW)
    with pytest.raises(tokens.TokenError, match="not an refresh token"):
        tokens.verify_refresh(token, KEY, NOW)


def test_refresh_tokens_carry_a_fresh_id_each_time() -> None:
    first, a = tokens.issue_refresh("u1", KEY, NOW, 3600)
    second, b = tokens.issue_refresh("u1", KEY, NOW, 3600)
    assert a.token_id != b.token_id and first != second
    assert tokens.verify_refresh(first, KEY, NOW) == a


def test_a_short_signing_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        tokens.check_signing_key("short")


BASE: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "t", "version": "1"},
    "paths": {},
    "components": {
        "parameters": {
            "TenantId": {
                "name": "tenant_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
            },
            "Limit": {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 200},
            },
        }
    },
}


def fragment(**op: Any) -> dict[str, Any]:
    spec = {"operationId": "getThing", "x-ringwise-roles": ["tenant_admin"], **op}
    return {"paths": {"/v1/tenants/{tenant_id}/things/{thing_id}": {"get": spec}}}


def document(**op: Any) -> OpenApiDocument:
    return OpenApiDocument(
        merge(copy.deepcopy(BASE), [("things", "things/api.yaml", fragment(**op))])
    )


def test_merge_marks_the_owning_service() -> None:
    op = document().by_id["getThing"]
    assert (op.service, op.method, op.tenant_scoped) == ("things", "GET", True)


@pytest.mark.parametrize(
    ("frag", "message"),
    [
        (
            {"paths": {"/v2/x": {"get": {"operationId": "a", "x-ringwise-roles": ["user"]}}}},
            "not under /v1/",
        ),
        ({"paths": {"/v1/x": {"get": {"x-ringwise-roles": ["user"]}}}}, "no operationId"),
        ({"paths": {"/v1/x": {"get": {"operationId": "a"}}}}, "no x-ringwise-roles"),
        (
            {
                "paths": {
                    "/v1/x": {
                        "get": {
                            "operationId": "a",
                            "x-ringwise-roles": ["user"],
                            "x-ringwise-self": "user_id",
                        }
                    }
                }
            },
            "names no path parameter",
        ),
        (
            {
                "paths": {
                    "/v1/tenant-things": {"get": {"operationId": "a", "x-ringwise-roles": ["user"]}}
                }
            },
            "under /v1/tenants",
        ),
    ],
)
def test_merge_refuses_fragments_that_break_the_conventions(
    frag: dict[str, Any], message: str
) -> None:
    with pytest.raises(FragmentError, match=message):
        merge(copy.deepcopy(BASE), [("things", "f.yaml", frag)])


def test_merge_refuses_duplicate_operation_ids_and_schemas() -> None:
    other = {
        "paths": {"/v1/other": {"get": {"operationId": "getThing", "x-ringwise-roles": ["user"]}}}
    }
    with pytest.raises(FragmentError, match="also in"):
        merge(copy.deepcopy(BASE), [("a", "a.yaml", fragment()), ("b", "b.yaml", other)])
    s1 = {"components": {"schemas": {"X": {"type": "string"}}}}
    s2 = {"components": {"schemas": {"X": {"type": "integer"}}}}
    with pytest.raises(FragmentError, match="already defined"):
        merge(copy.deepcopy(BASE), [("a", "a.yaml", s1), ("b", "b.yaml", s2)])


def test_parameters_are_typed_and_every_error_reported() -> None:
    op = document(parameters=[{"$ref": "#/components/parameters/Limit"}]).by_id["getThing"]
    values, errors = op.validate_parameters({"tenant_id": "t1", "thing_id": "x"}, [("limit", "20")])
    assert (values["limit"], errors) == (20, [])
    _, errors = op.validate_parameters(
        {"tenant_id": "t1", "thing_id": "x"}, [("limit", "0"), ("zap", "1")]
    )
    assert {e.field for e in errors} == {"query.limit", "query.zap"}
    _, errors = op.validate_parameters({"tenant_id": "t1", "thing_id": "x"}, [("limit", "ten")])
    assert [e.field for e in errors] == ["query.limit"]


def test_body_errors_point_at_the_field() -> None:
    body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
                    "additionalProperties": False,
                }
            }
        },
    }
    op = document(requestBody=body).by_id["getThing"]
    errors = op.validate_body({"n": "x", "extra": 1})
    assert {e.field for e in errors} == {"body", "body/n"}
    assert op.validate_body({"name": "ok", "n": 3}) == []


def test_tenant_scope_and_roles_are_enforced_in_one_place() -> None:
    op = document().by_id["getThing"]
    path = {"tenant_id": "t1", "thing_id": "x"}
    authorise(op, principal(), path)
    authorise(op, principal(api_pb2.ROLE_OPERATOR_ADMIN, tenant=""), path)
    with pytest.raises(ApiError) as other_tenant:
        authorise(op, principal(tenant="t2"), path)
    assert other_tenant.value.status == 404
    with pytest.raises(ApiError) as wrong_role:
        authorise(op, principal(api_pb2.ROLE_COMPLIANCE_OFFICER), path)
    assert wrong_role.value.status == 403


def test_users_reach_only_themselves_through_self_operations() -> None:
    frag = {
        "paths": {
            "/v1/tenants/{tenant_id}/users/{user_id}": {
                "get": {
                    "operationId": "getUser",
                    "x-ringwise-roles": ["tenant_admin"],
                    "x-ringwise-self": "user_id",
                }
            }
        }
    }
    op = OpenApiDocument(merge(copy.deepcopy(BASE), [("d", "d.yaml", frag)])).by_id["getUser"]
    me = principal(api_pb2.ROLE_USER, sub="u7")
    authorise(op, me, {"tenant_id": "t1", "user_id": "u7"})
    with pytest.raises(ApiError) as other:
        authorise(op, me, {"tenant_id": "t1", "user_id": "u8"})
    assert other.value.status == 404
