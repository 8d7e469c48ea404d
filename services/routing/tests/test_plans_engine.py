"""The person-follows-number policy engine, one row per seed behaviour.

Each row names what a caller or user does, the profile change it needs, and the plan that
must come out (steps rendered one per line by plan_summary) plus the reasons that must be
recorded (in order, as a subsequence of all reasons).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time

import pytest
from ringwise_routing.plans.engine import CallPlan, Divert, Voicemail, plan_call
from ringwise_routing.plans.examples import (
    ANONYMOUS,
    COLLEAGUE,
    CONTEXT,
    OFFICE_HOURS,
    SAT_10_00,
    STRANGER,
    STRANGER_NUMBER,
    VIP,
    VIP_NUMBER,
    WED_10_00,
    WED_20_00,
    alice,
)
from ringwise_routing.plans.explain import explain, plan_summary, reason_codes
from ringwise_routing.plans.model import (
    ALL_DAYS,
    WORK_DAYS,
    AnonymousPolicy,
    AvailabilityState,
    Caller,
    CallFlowRule,
    DeviceStatus,
    Fallback,
    FallbackKind,
    InboundFilter,
    LocationKind,
    ManualState,
    PlanContext,
    RedirectKind,
    RedirectTarget,
    RingMode,
    RoutingProfile,
    Screening,
    TenantPolicy,
    Terminal,
    TimeRange,
    standard_states,
)

Edit = Callable[[RoutingProfile], RoutingProfile]


def manual(state: str, until: datetime | None = None) -> Edit:
    return lambda p: replace(p, manual=ManualState(state, until))


def with_state(name: str, **changes: object) -> Edit:
    def edit(p: RoutingProfile) -> RoutingProfile:
        states = dict(p.states)
        states[name] = replace(states[name], **changes)  # type: ignore[arg-type]
        return replace(p, states=states)

    return edit


def both(*edits: Edit) -> Edit:
    def edit(p: RoutingProfile) -> RoutingProfile:
        for e in edits:
            p = e(p)
        return p

    return edit


def terminal_status(terminal_id: str, status: DeviceStatus) -> Edit:
    return lambda p: replace(
        p,
        terminals=tuple(
            replace(t, status=status) if t.terminal_id == terminal_id else t for t in p.terminals
        ),
    )


def call_flow(period: TimeRange | None, *redirects: RedirectTarget, timeout: int = 5) -> Edit:
    return lambda p: replace(
        p, call_flow=CallFlowRule(period, "Europe/London", timeout, tuple(redirects))
    )


def unchanged(p: RoutingProfile) -> RoutingProfile:
    return p


@dataclass(frozen=True)
class Row:
    behaviour: str
    edit: Edit
    caller: Caller
    at: datetime
    steps: list[str]
    reasons: list[str]
    context: PlanContext = CONTEXT


DESK_THEN_MOBILE = "ring sequential t-desk/15,t-mobile/20"
REJECTED = ["play sound:ss-noservice", "reject 21"]
TEMP = Terminal("t-temp", LocationKind.TEMP, "+33140000000", ring_timeout_s=30)
LUNCH = AvailabilityState(
    "Lunch", ("t-mobile",), RingMode.SEQUENTIAL, Fallback(FallbackKind.VOICEMAIL, "lunch")
)

ROWS = [
    Row(
        "caller reaches an Available user at her desk, then her mobile, then her voicemail",
        unchanged,
        STRANGER,
        WED_10_00,
        [DESK_THEN_MOBILE, "voicemail available"],
        ["state.default", "ring", "fallback.voicemail"],
    ),
    Row(
        "user with Duet has desk and mobile ring together",
        with_state("Available", ring_mode=RingMode.SIMULTANEOUS),
        STRANGER,
        WED_10_00,
        ["ring simultaneous t-desk/15,t-mobile/20", "voicemail available"],
        ["ring"],
    ),
    Row(
        "user who set Busy sends callers straight to the Busy greeting",
        manual("Busy"),
        STRANGER,
        WED_10_00,
        ["voicemail busy"],
        ["state.manual", "ring.none", "fallback.voicemail"],
    ),
    Row(
        "user Travelling is rung on her mobile only, then the Travelling greeting",
        both(manual("Travelling"), with_state("Travelling", terminal_ids=("t-mobile",))),
        STRANGER,
        WED_10_00,
        ["ring sequential t-mobile/20", "voicemail travelling"],
        ["state.manual", "ring", "fallback.voicemail"],
    ),
    Row(
        "caller to a user on Holiday hears the Holiday greeting",
        manual("Holiday"),
        STRANGER,
        WED_10_00,
        ["voicemail holiday"],
        ["state.manual", "ring.none"],
    ),
    Row(
        "caller on the VIP list reaches a user on Holiday",
        manual("Holiday"),
        VIP,
        WED_10_00,
        [DESK_THEN_MOBILE, "voicemail holiday"],
        ["state.manual", "caller.vip", "vip.bypass", "ring", "fallback.voicemail"],
    ),
    Row(
        "caller on the user's block list is refused",
        lambda p: replace(p, inbound_filter=InboundFilter(blocked=frozenset({STRANGER_NUMBER}))),
        STRANGER,
        WED_10_00,
        REJECTED,
        ["caller.blocked.user"],
    ),
    Row(
        "caller matching a tenant block-list prefix is refused before the user's settings",
        unchanged,
        STRANGER,
        WED_10_00,
        REJECTED,
        ["caller.blocked.tenant"],
        PlanContext(TenantPolicy("acme", inbound_filter=InboundFilter(frozenset({"+4416329*"})))),
    ),
    Row(
        "a VIP on the tenant block list is still refused",
        unchanged,
        VIP,
        WED_10_00,
        REJECTED,
        ["caller.blocked.tenant"],
        PlanContext(TenantPolicy("acme", inbound_filter=InboundFilter(frozenset({VIP_NUMBER})))),
    ),
    Row(
        "anonymous caller is refused by a user who refuses anonymous calls",
        lambda p: replace(p, inbound_filter=InboundFilter(anonymous=AnonymousPolicy.REJECT)),
        ANONYMOUS,
        WED_10_00,
        REJECTED,
        ["caller.anonymous.user"],
    ),
    Row(
        "anonymous caller is refused by a tenant that refuses anonymous calls",
        unchanged,
        ANONYMOUS,
        WED_10_00,
        REJECTED,
        ["caller.anonymous.tenant"],
        PlanContext(
            TenantPolicy("acme", inbound_filter=InboundFilter(anonymous=AnonymousPolicy.REJECT))
        ),
    ),
    Row(
        "anonymous caller reaches a user who allows anonymous calls",
        unchanged,
        ANONYMOUS,
        WED_10_00,
        [DESK_THEN_MOBILE, "voicemail available"],
        ["state.default", "ring"],
    ),
    Row(
        "caller not on the user's allow list is refused",
        lambda p: replace(p, inbound_filter=InboundFilter(allowed_only=frozenset({"+331*"}))),
        STRANGER,
        WED_10_00,
        REJECTED,
        ["caller.not_allowed.user"],
    ),
    Row(
        "VIP passes the user's allow list",
        lambda p: replace(p, inbound_filter=InboundFilter(allowed_only=frozenset({"+331*"}))),
        VIP,
        WED_10_00,
        [DESK_THEN_MOBILE, "voicemail available"],
        ["caller.vip", "ring"],
    ),
    Row(
        "caller during office hours reaches a scheduled user",
        lambda p: replace(p, schedule=OFFICE_HOURS),
        STRANGER,
        WED_10_00,
        [DESK_THEN_MOBILE, "voicemail available"],
        ["state.schedule", "ring"],
    ),
    Row(
        "caller after office hours gets the Busy greeting from the schedule",
        lambda p: replace(p, schedule=OFFICE_HOURS),
        STRANGER,
        WED_20_00,
        ["voicemail busy"],
        ["state.schedule_otherwise", "ring.none"],
    ),
    Row(
        "caller on a Saturday morning gets the schedule's Busy greeting",
        lambda p: replace(p, schedule=OFFICE_HOURS),
        STRANGER,
        SAT_10_00,
        ["voicemail busy"],
        ["state.schedule_otherwise"],
    ),
    Row(
        "user's manual Busy beats the schedule while it lasts",
        both(
            lambda p: replace(p, schedule=OFFICE_HOURS),
            manual("Busy", until=datetime(2026, 11, 25, 12, 0, tzinfo=UTC)),
        ),
        STRANGER,
        WED_10_00,
        ["voicemail busy"],
        ["state.manual"],
    ),
    Row(
        "user's manual Busy expires and the schedule applies again",
        both(
            lambda p: replace(p, schedule=OFFICE_HOURS),
            manual("Busy", until=datetime(2026, 11, 25, 9, 30, tzinfo=UTC)),
        ),
        STRANGER,
        WED_10_00,
        [DESK_THEN_MOBILE, "voicemail available"],
        ["state.schedule"],
    ),
    Row(
        "a deleted desk phone is never rung",
        terminal_status("t-desk", DeviceStatus.DELETED),
        STRANGER,
        WED_10_00,
        ["ring sequential t-mobile/20", "voicemail available"],
        ["terminal.deleted", "ring"],
    ),
    Row(
        "a blocked mobile is never rung",
        terminal_status("t-mobile", DeviceStatus.BLOCKED),
        STRANGER,
        WED_10_00,
        ["ring sequential t-desk/15", "voicemail available"],
        ["terminal.blocked", "ring"],
    ),
    Row(
        "user who logged out of every location sends even a VIP to voicemail",
        lambda p: replace(p, logged_out=True),
        VIP,
        WED_10_00,
        ["voicemail available"],
        ["location.none"],
    ),
    Row(
        "user who set a Temp location from a hotel phone is rung there first",
        both(
            lambda p: replace(p, terminals=(*p.terminals, TEMP)),
            with_state("Available", terminal_ids=("t-temp", "t-mobile")),
        ),
        STRANGER,
        WED_10_00,
        ["ring sequential t-temp/30,t-mobile/20", "voicemail available"],
        ["ring"],
    ),
    Row(
        "user Busy with 'divert to delegate' passes callers to the delegate",
        both(manual("Busy"), with_state("Busy", fallback=Fallback(FallbackKind.DELEGATE))),
        STRANGER,
        WED_10_00,
        ["divert delegate bob"],
        ["ring.none", "fallback.delegate"],
    ),
    Row(
        "delegate who already had this call is not rung again: voicemail instead",
        both(manual("Busy"), with_state("Busy", fallback=Fallback(FallbackKind.DELEGATE))),
        STRANGER,
        WED_10_00,
        ["voicemail busy"],
        ["delegate.none", "fallback.voicemail"],
        PlanContext(CONTEXT.tenant, divert_chain=("bob",)),
    ),
    Row(
        "a call already redirected 3 times is not diverted a fourth time",
        both(
            manual("Busy"),
            with_state("Busy", fallback=Fallback(FallbackKind.DELEGATE, target="dave")),
        ),
        STRANGER,
        WED_10_00,
        ["voicemail busy"],
        ["divert.limit", "fallback.voicemail"],
        PlanContext(CONTEXT.tenant, divert_chain=("x", "y", "z")),
    ),
    Row(
        "caller asks for the delegate (presses 0) and is diverted on demand",
        unchanged,
        STRANGER,
        WED_10_00,
        ["divert delegate bob"],
        ["delegate.on_demand", "fallback.delegate"],
        PlanContext(CONTEXT.tenant, delegate_on_demand=True),
    ),
    Row(
        "call returning to a user already in the divert chain goes to her voicemail",
        unchanged,
        STRANGER,
        WED_10_00,
        ["voicemail unavailable"],
        ["divert.loop"],
        PlanContext(CONTEXT.tenant, divert_chain=("alice",)),
    ),
    Row(
        "user with screening: caller says their name, the answering phone hears it",
        lambda p: replace(p, screening=Screening(enabled=True)),
        STRANGER,
        WED_10_00,
        ["screen name", DESK_THEN_MOBILE + " whisper", "voicemail available"],
        ["screen", "ring"],
    ),
    Row(
        "caller must enter the user's call password (call introduction)",
        lambda p: replace(p, screening=Screening(enabled=True, ask_name=False, password="2468")),
        STRANGER,
        WED_10_00,
        ["screen password", DESK_THEN_MOBILE, "voicemail available"],
        ["screen"],
    ),
    Row(
        "VIP caller is not screened",
        lambda p: replace(p, screening=Screening(enabled=True)),
        VIP,
        WED_10_00,
        [DESK_THEN_MOBILE, "voicemail available"],
        ["caller.vip", "screen.skipped", "ring"],
    ),
    Row(
        "colleague calling internally is not screened",
        lambda p: replace(p, screening=Screening(enabled=True)),
        COLLEAGUE,
        WED_10_00,
        [DESK_THEN_MOBILE, "voicemail available"],
        ["screen.skipped"],
    ),
    Row(
        "call-flow rule Always: ring 5 s, then an external number, then a colleague",
        call_flow(
            None,
            RedirectTarget(RedirectKind.EXTERNAL, "+15550100", ring_timeout_s=10),
            RedirectTarget(RedirectKind.USER, "carol"),
        ),
        STRANGER,
        WED_10_00,
        [
            "ring sequential t-desk/5,t-mobile/5",
            "ring sequential redirect-1/10",
            "divert user carol",
        ],
        ["callflow.applies", "ring", "redirect.external", "redirect.user"],
    ),
    Row(
        "call-flow period 09:00-18:00 Mon-Fri redirects a Wednesday call to voicemail",
        call_flow(
            TimeRange(WORK_DAYS, time(9, 0), time(18, 0)),
            RedirectTarget(RedirectKind.VOICEMAIL),
        ),
        STRANGER,
        WED_10_00,
        ["ring sequential t-desk/5,t-mobile/5", "voicemail available"],
        ["callflow.applies", "redirect.voicemail"],
    ),
    Row(
        "call-flow period does not apply on Saturday: the user's own timeouts",
        call_flow(
            TimeRange(WORK_DAYS, time(9, 0), time(18, 0)),
            RedirectTarget(RedirectKind.VOICEMAIL),
        ),
        STRANGER,
        SAT_10_00,
        [DESK_THEN_MOBILE, "voicemail available"],
        ["callflow.outside_period", "fallback.voicemail"],
    ),
    Row(
        "call-flow redirect back to a user already in the chain is skipped",
        call_flow(
            TimeRange(ALL_DAYS, time(22, 0), time(6, 0)),
            RedirectTarget(RedirectKind.USER, "bob"),
            RedirectTarget(RedirectKind.TEAM, "support"),
        ),
        STRANGER,
        datetime(2026, 11, 26, 2, 0, tzinfo=UTC),  # 02:00 Thursday: inside Wednesday's 22-06
        ["ring sequential t-desk/5,t-mobile/5", "divert team support"],
        ["callflow.applies", "divert.loop", "redirect.team"],
        PlanContext(CONTEXT.tenant, divert_chain=("bob",)),
    ),
    Row(
        "user whose fallback is 'no messages' plays her greeting and releases the call",
        with_state("Available", fallback=Fallback(FallbackKind.NO_MESSAGES, "extended-absence")),
        STRANGER,
        WED_10_00,
        [DESK_THEN_MOBILE, "play greeting:extended-absence", "reject 19"],
        ["fallback.no_messages"],
    ),
    Row(
        "unanswered call goes to the user's team",
        with_state("Available", fallback=Fallback(FallbackKind.TEAM, target="sales")),
        STRANGER,
        WED_10_00,
        [DESK_THEN_MOBILE, "divert team sales"],
        ["fallback.team"],
    ),
    Row(
        "unanswered call is forwarded to an external number",
        with_state("Available", fallback=Fallback(FallbackKind.EXTERNAL, target="+15550123")),
        STRANGER,
        WED_10_00,
        [DESK_THEN_MOBILE, "divert external +15550123"],
        ["fallback.external"],
    ),
    Row(
        "user in a tenant-defined 'Lunch' state is rung on her mobile only",
        both(
            lambda p: replace(p, states={**p.states, "Lunch": LUNCH}),
            manual("Lunch"),
        ),
        STRANGER,
        WED_10_00,
        ["ring sequential t-mobile/20", "voicemail lunch"],
        ["state.manual", "ring"],
        PlanContext(TenantPolicy("acme", custom_states=frozenset({"Lunch"}))),
    ),
    Row(
        "a state removed after the user chose it still ends in voicemail",
        manual("Gone"),
        STRANGER,
        WED_10_00,
        ["voicemail unavailable"],
        ["state.manual", "state.unknown"],
    ),
]


def is_subsequence(wanted: list[str], got: list[str]) -> bool:
    remaining = iter(got)
    return all(code in remaining for code in wanted)


@pytest.mark.parametrize("row", ROWS, ids=[r.behaviour for r in ROWS])
def test_plan(row: Row) -> None:
    plan = plan_call(row.edit(alice()), row.caller, row.at, row.context)
    assert plan_summary(plan) == row.steps
    assert is_subsequence(row.reasons, reason_codes(plan)), reason_codes(plan)
    assert all(r.detail for r in plan.reasons)


def test_voicemail_offers_the_delegate_break_out() -> None:
    plan = plan_call(replace(alice(), manual=ManualState("Busy")), STRANGER, WED_10_00, CONTEXT)
    assert plan.final == Voicemail("alice", "busy", delegate_breakout="bob")


def test_delegated_call_raises_the_alert_for_messaging() -> None:
    profile = with_state("Busy", fallback=Fallback(FallbackKind.DELEGATE))(
        replace(alice(), manual=ManualState("Busy"))
    )
    final = plan_call(profile, STRANGER, WED_10_00, CONTEXT).final
    assert isinstance(final, Divert)
    assert final.alert == "delegated-call"


def test_screening_offers_the_delegate_to_the_answering_user() -> None:
    profile = replace(alice(), screening=Screening(enabled=True))
    first = plan_call(profile, STRANGER, WED_10_00, CONTEXT).steps[0]
    assert getattr(first, "delegate", None) == "bob"


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        plan_call(alice(), STRANGER, datetime(2026, 11, 25, 10, 0), CONTEXT)


def test_same_inputs_give_the_same_plan() -> None:
    plans: list[CallPlan] = [plan_call(alice(), VIP, WED_10_00, CONTEXT) for _ in range(3)]
    assert plans[0] == plans[1] == plans[2]


def test_explain_is_json_and_never_shows_the_call_password() -> None:
    profile = replace(alice(), screening=Screening(enabled=True, password="97531"))
    answer = explain(profile, STRANGER, WED_10_00)
    text = json.dumps(answer)
    assert "97531" not in text
    assert answer["state"] == "Available"
    assert answer["ends_in"] == "voicemail"
    assert answer["steps"][0] == {
        "type": "screen",
        "ask_name": True,
        "password_required": True,
        "delegate": "bob",
    }
    assert answer["steps"][1]["legs"][0]["terminal_id"] == "t-desk"
    assert [r["code"] for r in answer["reasons"]] == [
        "state.default",
        "screen",
        "ring",
        "fallback.voicemail",
    ]
    assert answer["at"] == "2026-11-25T10:00:00+00:00"


def test_explain_of_a_refused_caller_has_no_state() -> None:
    profile = replace(alice(), inbound_filter=InboundFilter(blocked=frozenset({"+4416329*"})))
    answer = explain(profile, STRANGER, WED_10_00)
    assert answer["state"] is None
    assert answer["ends_in"] == "reject"
    assert answer["reasons"][0]["code"] == "caller.blocked.user"


def test_standard_states_are_the_seed_four() -> None:
    states = standard_states(("t-desk",))
    assert list(states) == ["Available", "Busy", "Travelling", "Holiday"]
    assert [s.fallback.greeting for s in states.values()] == [
        "available",
        "busy",
        "travelling",
        "holiday",
    ]
