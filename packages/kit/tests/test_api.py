"""The service side of the gateway's forwarding: dispatch rules, and the round trip on NATS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from ringwise.api.v1 import api_pb2
from ringwise_dev.infra import Infra
from ringwise_kit import bus
from ringwise_kit.api import (
    ROLES_BY_NAME,
    ApiCall,
    ApiError,
    ApiResult,
    ApiRouter,
    call_service,
    role_may_call,
    serve_api,
)

router = ApiRouter()


@router.operation("getThing")
async def get_thing(call: ApiCall) -> ApiResult:
    if call.param("thing_id") == "missing":
        raise ApiError(404, "Not Found", "no such thing")
    return ApiResult(
        body={"id": call.param("thing_id"), "price": Decimal("1.10"), "q": call.query_all("q")},
        headers={"ETag": '"1"'},
    )


@router.operation("explode")
async def explode(call: ApiCall) -> ApiResult:
    raise RuntimeError("database on fire")


@router.operation("echo")
async def echo(call: ApiCall) -> ApiResult:
    return ApiResult(status=201, body=call.json())


def tenant_admin(tenant: str) -> api_pb2.Principal:
    return api_pb2.Principal(subject_id="u1", tenant_id=tenant, role=api_pb2.ROLE_TENANT_ADMIN)


def call(operation: str, principal: api_pb2.Principal, body: bytes = b"", **params: str) -> ApiCall:
    return ApiCall(
        operation=operation,
        principal=principal,
        path_params=params,
        query=[("q", "a"), ("q", "b")],
        body=body,
        request_id="r1",
    )


def body(reply: api_pb2.ApiReply) -> dict[str, object]:
    decoded = json.loads(reply.body)
    assert isinstance(decoded, dict)
    return decoded


@pytest.mark.asyncio
async def test_handler_result_is_json_with_headers() -> None:
    reply = await router.dispatch(
        call("getThing", tenant_admin("t1"), tenant_id="t1", thing_id="x")
    )
    assert (reply.status, reply.content_type, reply.headers["ETag"]) == (
        200,
        "application/json",
        '"1"',
    )
    assert body(reply) == {"id": "x", "price": "1.10", "q": ["a", "b"]}


@pytest.mark.asyncio
async def test_another_tenants_path_answers_404_even_if_the_gateway_let_it_through() -> None:
    reply = await router.dispatch(
        call("getThing", tenant_admin("t2"), tenant_id="t1", thing_id="x")
    )
    assert reply.status == 404
    assert reply.content_type == "application/problem+json"
    assert "x" not in reply.body.decode()


@pytest.mark.asyncio
async def test_operator_admin_reaches_every_tenant() -> None:
    operator = api_pb2.Principal(subject_id="op", role=api_pb2.ROLE_OPERATOR_ADMIN)
    reply = await router.dispatch(call("getThing", operator, tenant_id="t1", thing_id="x"))
    assert reply.status == 200


@pytest.mark.asyncio
async def test_expected_errors_are_problems_and_crashes_are_500_without_internals() -> None:
    missing = await router.dispatch(
        call("getThing", tenant_admin("t1"), tenant_id="t1", thing_id="missing")
    )
    assert (missing.status, body(missing)["detail"]) == (404, "no such thing")
    crashed = await router.dispatch(call("explode", tenant_admin("t1"), tenant_id="t1"))
    assert crashed.status == 500
    assert "fire" not in crashed.body.decode()
    assert body(crashed)["detail"] == "request r1 failed"
    unknown = await router.dispatch(call("nope", tenant_admin("t1")))
    assert unknown.status == 404


@pytest.mark.asyncio
async def test_bad_json_body_is_a_400() -> None:
    reply = await router.dispatch(call("echo", tenant_admin("t1"), body=b"{not json"))
    assert reply.status == 400
    assert "not valid JSON" in str(body(reply)["detail"])


def test_an_operation_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="twice"):
        router.operation("echo")(echo)


@pytest_asyncio.fixture(loop_scope="session")
async def nc(infra: Infra) -> AsyncIterator[NatsClient]:
    client = await bus.connect(infra.endpoints.nats_url, "kit-api-tests")
    yield client
    await client.drain()


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_round_trip_over_nats(nc: NatsClient) -> None:
    sub = await serve_api(nc, "kitapitest", router)
    try:
        reply = await call_service(
            nc, "kitapitest", call("echo", tenant_admin("t1"), body=b'{"a": 1}', tenant_id="t1")
        )
        assert (reply.status, body(reply)) == (201, {"a": 1})
    finally:
        await sub.unsubscribe()


@pytest.mark.parametrize(
    ("role", "subject", "roles", "path_user", "allowed"),
    [
        # `user` listed beside x-ringwise-self still reaches only its own data.
        (api_pb2.ROLE_USER, "u1", ("tenant_admin", "user"), "u1", True),
        (api_pb2.ROLE_USER, "u1", ("tenant_admin", "user"), "u2", False),
        # Not listed: its own only, as before.
        (api_pb2.ROLE_USER, "u1", ("tenant_admin",), "u1", True),
        (api_pb2.ROLE_USER, "u1", ("tenant_admin",), "u2", False),
        (api_pb2.ROLE_USER, "", ("tenant_admin", "user"), "", False),
        # Listed roles reach every user of their tenant; unlisted ones none.
        (api_pb2.ROLE_TENANT_ADMIN, "a1", ("tenant_admin", "user"), "u2", True),
        (api_pb2.ROLE_SUPERVISOR, "s1", ("tenant_admin", "user"), "u2", False),
        (api_pb2.ROLE_OPERATOR_ADMIN, "o1", (), "u2", True),
    ],
)
def test_role_rule_with_a_self_parameter(
    role: api_pb2.Role.ValueType,
    subject: str,
    roles: tuple[str, ...],
    path_user: str,
    allowed: bool,
) -> None:
    principal = api_pb2.Principal(role=role, subject_id=subject, tenant_id="t1")
    granted = frozenset(ROLES_BY_NAME[name] for name in roles)
    path = {"tenant_id": "t1", "user_id": path_user}
    assert role_may_call(principal, granted, "user_id", path) is allowed


def test_role_rule_without_a_self_parameter_is_the_list() -> None:
    user = api_pb2.Principal(role=api_pb2.ROLE_USER, subject_id="u1", tenant_id="t1")
    listed = frozenset({ROLES_BY_NAME["user"]})
    assert role_may_call(user, listed, None, {"tenant_id": "t1"})
    assert not role_may_call(user, frozenset(), None, {"tenant_id": "t1"})
