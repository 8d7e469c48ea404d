"""Click-to-dial decisions made at the API before anything rings (click_to_dial/decide.py,
http.py's body parsing)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from ringwise_kit.api import ApiError
from ringwise_routing.click_to_dial.decide import (
    NoTerminal,
    callback_plan,
    refusal_detail,
    user_terminal,
)
from ringwise_routing.click_to_dial.http import parse_body
from ringwise_routing.plans.engine import Reject
from ringwise_routing.plans.model import (
    DeviceStatus,
    LocationKind,
    ManualState,
    RingMode,
    RoutingProfile,
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
