"""Click-to-dial decisions made at the API before anything rings (click_to_dial/decide.py,
http.py's body parsing)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from ringwise.api.v1 import api_pb2
from ringwise.directory.v1 import resolve_pb2
from ringwise_kit.api import ApiCall, ApiError
from ringwise_routing.click_to_dial.decide import (
    NoTerminal,
    callback_plan,
    refusal_detail,
    user_terminal,
)
from ringwise_routing.click_to_dial.http import parse_body, routes
from ringwise_routing.plans.engine import Reject
from ringwise_routing.plans.model import (
    DeviceStatus,
    LocationKind,
    ManualState,
    RingMode,
    RoutingProfile,
    TenantPolicy,
    Terminal,
    standard_states,
)
from ringwise_routing.plans.outbound import (
    AuthoriseCredit,
    CollectPin,
    Connect,
    DialPermission,
    OutboundProfile,
    TenantDialling,
    plan_outbound,
)
from ringwise_routing.profiles.service import DirectoryUnavailable
from ringwise_routing.profiles.source import UserRouting

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
DESK = Terminal("desk", LocationKind.DESK, "PJSIP/desk", 20)
MOBILE = Terminal("mobile", LocationKind.MOBILE, "PJSIP/pstn/sip:+447700900001@carrier", 25)
GONE = Terminal("old", LocationKind.HOME, "PJSIP/old", 20, DeviceStatus.DELETED)


def profile(
    *terminals: Terminal, ring: tuple[str, ...], state: str | None = None
) -> RoutingProfile:
    return RoutingProfile(
        user_id="u1",
        tenant_id="t1",
        terminals=terminals,
        states=standard_states(ring, ring_mode=RingMode.SEQUENTIAL),
        manual=ManualState(state) if state else None,
    )


def test_the_first_usable_terminal_in_the_states_ring_order_rings_first() -> None:
    routing = profile(GONE, MOBILE, DESK, ring=("old", "mobile", "desk"))
    assert user_terminal(routing, NOW, None) == MOBILE


def test_from_terminal_chooses_any_usable_terminal_of_the_user() -> None:
    routing = profile(MOBILE, DESK, ring=("mobile", "desk"))
    assert user_terminal(routing, NOW, "desk") == DESK


@pytest.mark.parametrize(
    ("from_terminal", "kind"),
    [("nope", "unknown"), ("old", "unreachable")],
)
def test_from_terminal_unknown_or_unusable_is_refused(from_terminal: str, kind: str) -> None:
    routing = profile(GONE, DESK, ring=("desk",))
    refused = user_terminal(routing, NOW, from_terminal)
    assert isinstance(refused, NoTerminal) and refused.kind == kind


def test_a_state_that_rings_nobody_leaves_no_terminal() -> None:
    routing = profile(DESK, ring=("desk",), state="Busy")
    refused = user_terminal(routing, NOW, None)
    assert refused == NoTerminal("unreachable", "no terminal of the user can be rung in state Busy")


def test_the_dialling_pin_is_not_asked_for_a_call_placed_through_the_api() -> None:
    outbound = OutboundProfile("u1", "+442079460000", international=DialPermission.PIN)
    outbound = replace(outbound, dialling_pin="4321")
    phone_plan = plan_outbound(outbound, TenantDialling(), "0033144556677")
    assert isinstance(phone_plan.steps[0], CollectPin)
    plan = callback_plan(phone_plan)
    assert [type(step) for step in plan.steps] == [AuthoriseCredit, Connect]
    assert plan.reasons[-1].code == "pin.api"


@pytest.mark.parametrize("dialled", ["09012345678", "not a number"])
def test_barred_or_undialable_targets_stay_a_reject_with_its_reasons(dialled: str) -> None:
    plan = callback_plan(
        plan_outbound(OutboundProfile("u1", "+442079460000"), TenantDialling(), dialled)
    )
    assert isinstance(plan.steps[-1], Reject)
    assert refusal_detail(plan)


@pytest.mark.parametrize("dialled", ["999", "112"])
def test_emergency_numbers_are_refused_through_the_api(dialled: str) -> None:
    phone_plan = plan_outbound(OutboundProfile("u1", "+442079460000"), TenantDialling(), dialled)
    assert isinstance(phone_plan.steps[-1], Connect)  # from a phone they always connect
    plan = callback_plan(phone_plan)
    assert [type(step) for step in plan.steps] == [Reject]
    assert plan.reasons[-1].code == "emergency.api"
    assert "emergency" in refusal_detail(plan)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ([], 400, None),
        ({}, 422, "to"),
        ({"to": ""}, 422, "to"),
        ({"to": 123}, 422, "to"),
        ({"to": "1" * 33}, 422, "to"),
        ({"to": "+33144556677", "from_terminal": ""}, 422, "from_terminal"),
        ({"to": "+33144556677", "from_terminal": 5}, 422, "from_terminal"),
    ],
)
def test_bad_bodies_are_refused(body: object, status: int, field: str | None) -> None:
    with pytest.raises(ApiError) as refused:
        parse_body(body)
    assert refused.value.status == status
    if field is not None:
        assert refused.value.errors == [
            {"field": field, "message": refused.value.errors[0]["message"]}
        ]


def test_a_good_body_is_parsed() -> None:
    assert parse_body({"to": " 201 ", "from_terminal": "desk"}) == ("201", "desk")
    assert parse_body({"to": "+33144556677"}) == ("+33144556677", None)


# -- the operations, with the routing process's pieces faked --------------------------------

Reply = resolve_pb2.ResolveNumberReply
ADMIN = api_pb2.Principal(tenant_id="acme", role=api_pb2.ROLE_TENANT_ADMIN, subject_id="admin")


class FakeProfiles:
    def __init__(self, routing: UserRouting | None, *, directory_down: bool = False) -> None:
        self.routing = routing
        self.directory_down = directory_down

    async def resolve_user(self, tenant_id: str, user_id: str) -> Reply | None:
        if self.directory_down:
            raise DirectoryUnavailable("timeout")
        if self.routing is None or user_id != "u1":
            return None
        return Reply(status=Reply.STATUS_FOUND, tenant_id=tenant_id, user_id=user_id)

    async def routing_for(self, user: Reply) -> UserRouting:
        assert self.routing is not None
        return self.routing


class FakeUsers:
    async def by_extension(self, tenant_id: str, extension: str) -> Reply:
        if extension == "207":
            return Reply(status=Reply.STATUS_FOUND, tenant_id=tenant_id, user_id="u2")
        return Reply(status=Reply.STATUS_NOT_FOUND)


class FakeStatus:
    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}

    async def create(
        self, tenant_id: str, user_id: str, call_id: str, to: str, terminal_id: str
    ) -> dict[str, Any]:
        state = {"call_id": call_id, "user_id": user_id, "to": to, "status": "ringing_user"}
        self.calls[call_id] = state | {"terminal_id": terminal_id}
        return state

    async def get(self, tenant_id: str, call_id: str) -> dict[str, Any] | None:
        return self.calls.get(call_id)


class FakeRouter:
    def __init__(self, *, connected: bool = True) -> None:
        self.ari_connected = connected
        self.started: list[dict[str, Any]] = []

    def start_callback(self, **call: Any) -> bool:
        self.started.append(call)
        return True


def user_routing(state: str | None = None, outbound: OutboundProfile | None = None) -> UserRouting:
    return UserRouting(
        profile=profile(DESK, MOBILE, ring=("desk", "mobile"), state=state),
        outbound=outbound or OutboundProfile("u1", "+442079460000"),
        tenant=TenantPolicy("acme"),
        dialling=TenantDialling(),
    )


async def dispatch(
    operation: str,
    *,
    profiles: FakeProfiles,
    router: FakeRouter | None,
    status: FakeStatus | None = None,
    body: object = None,
    **params: str,
) -> tuple[int, Any]:
    api = routes(
        cast(Any, profiles),
        cast(Any, FakeUsers()),
        cast(Any, status or FakeStatus()),
        lambda: cast(Any, router),
    )
    reply = await api.dispatch(
        ApiCall(
            operation=operation,
            principal=ADMIN,
            path_params={"tenant_id": "acme", "user_id": "u1", **params},
            body=json.dumps(body).encode() if body is not None else b"",
        )
    )
    return reply.status, json.loads(reply.body)


@pytest.mark.parametrize(
    ("body", "routing", "status", "field"),
    [
        ({"to": "09012345678"}, user_routing(), 422, "to"),  # premium: barred
        ({"to": "hello"}, user_routing(), 422, "to"),
        ({"to": "208"}, user_routing(), 422, "to"),  # nobody's extension
        ({"to": "+33144556677", "from_terminal": "nope"}, user_routing(), 422, "from_terminal"),
        ({"to": "+33144556677"}, user_routing(state="Busy"), 409, None),
    ],
)
async def test_refusals_happen_before_anything_rings(
    body: object, routing: UserRouting, status: int, field: str | None
) -> None:
    router = FakeRouter()
    code, problem = await dispatch(
        "placeCall", profiles=FakeProfiles(routing), router=router, body=body
    )
    assert code == status
    if field is not None:
        assert [e["field"] for e in problem["errors"]] == [field]
    assert router.started == []


async def test_an_unknown_user_is_404() -> None:
    code, _ = await dispatch(
        "placeCall", profiles=FakeProfiles(None), router=FakeRouter(), body={"to": "201"}
    )
    assert code == 404


@pytest.mark.parametrize(
    ("profiles", "router"),
    [
        (FakeProfiles(user_routing(), directory_down=True), FakeRouter()),
        (FakeProfiles(user_routing()), FakeRouter(connected=False)),
        (FakeProfiles(user_routing()), None),  # call handling not started yet
    ],
)
async def test_the_directory_or_asterisk_down_is_503(
    profiles: FakeProfiles, router: FakeRouter | None
) -> None:
    code, _ = await dispatch("placeCall", profiles=profiles, router=router, body={"to": "201"})
    assert code == 503


async def test_a_placed_call_rings_the_first_terminal_without_asking_the_pin() -> None:
    outbound = OutboundProfile(
        "u1", "+442079460000", international=DialPermission.PIN, dialling_pin="4321"
    )
    router, status = FakeRouter(), FakeStatus()
    code, placed = await dispatch(
        "placeCall",
        profiles=FakeProfiles(user_routing(outbound=outbound)),
        router=router,
        status=status,
        body={"to": "0033144556677"},
    )
    assert code == 202 and placed["status"] == "ringing_user"
    [started] = router.started
    assert started["call_id"] == placed["call_id"] and started["terminal"] == DESK
    assert [type(step) for step in started["plan"].steps] == [AuthoriseCredit, Connect]
    code, shown = await dispatch(
        "getCall",
        profiles=FakeProfiles(user_routing()),
        router=router,
        status=status,
        call_id=placed["call_id"],
    )
    assert (code, shown["status"], shown["terminal_id"]) == (200, "ringing_user", "desk")
    # Another user's call is not theirs to see.
    code, _ = await dispatch(
        "getCall",
        profiles=FakeProfiles(user_routing()),
        router=router,
        status=status,
        call_id=placed["call_id"],
        user_id="u2",
    )
    assert code == 404
