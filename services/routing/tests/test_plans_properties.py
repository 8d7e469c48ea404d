"""Property tests of the policy engine over generated profiles (valid or not: the engine must
cope with anything stored before validation existed, or changed underneath it)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from ringwise_routing.plans.engine import (
    FINAL_STEP_TYPES,
    CallPlan,
    Divert,
    DivertKind,
    Ring,
    Screen,
    plan_call,
)
from ringwise_routing.plans.examples import alice
from ringwise_routing.plans.explain import explain
from ringwise_routing.plans.model import (
    BUILTIN_STATE_NAMES,
    MAX_REDIRECTS,
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
    ScheduleEntry,
    Screening,
    TenantPolicy,
    Terminal,
    TimeRange,
    Weekday,
    WorkSchedule,
)

USERS = ("alice", "bob", "carol", "dave", "erin")
NUMBERS = ("+441632960001", "+441632960002", "+15550100", "+33140000000")
ZONES = ("Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC")
STATE_NAMES = (*sorted(BUILTIN_STATE_NAMES), "Lunch")
TENANT = TenantPolicy("acme", custom_states=frozenset({"Lunch"}))

instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2031, 1, 1), timezones=st.just(UTC)
)
minutes = st.builds(time, st.integers(0, 23), st.sampled_from((0, 15, 30, 45)))
days = st.frozensets(st.sampled_from(list(Weekday)))
time_ranges = st.builds(TimeRange, days, minutes, minutes)
terminal_ids = st.sampled_from(("t0", "t1", "t2", "t3", "t4", "ghost"))

terminals = st.lists(
    st.builds(
        Terminal,
        terminal_id=st.sampled_from(("t0", "t1", "t2", "t3", "t4")),
        kind=st.sampled_from(list(LocationKind)),
        dial_string=st.sampled_from(("PJSIP/a", "PJSIP/b", *NUMBERS)),
        ring_timeout_s=st.integers(5, 120),
        status=st.sampled_from(list(DeviceStatus)),
    ),
    max_size=5,
    unique_by=lambda t: t.terminal_id,
).map(tuple)

fallbacks = st.builds(
    Fallback,
    kind=st.sampled_from(list(FallbackKind)),
    greeting=st.sampled_from(("", "busy", "holiday")),
    target=st.sampled_from(("", *USERS, "sales", *NUMBERS)),
)


@st.composite
def state_maps(draw: st.DrawFn) -> dict[str, AvailabilityState]:
    names = draw(st.lists(st.sampled_from(STATE_NAMES), min_size=1, unique=True))
    return {
        name: AvailabilityState(
            name,
            tuple(draw(st.lists(terminal_ids, max_size=6))),
            draw(st.sampled_from(list(RingMode))),
            draw(fallbacks),
        )
        for name in names
    }


redirects = st.builds(
    RedirectTarget,
    kind=st.sampled_from(list(RedirectKind)),
    target=st.sampled_from((*USERS, "sales", *NUMBERS)),
    ring_timeout_s=st.integers(5, 60),
)
call_flows = st.builds(
    CallFlowRule,
    period=st.none() | time_ranges,
    timezone=st.sampled_from(ZONES),
    call_timeout_s=st.integers(5, 60),
    redirects=st.lists(redirects, max_size=5).map(tuple),  # more than 3: the engine caps
)
schedules = st.builds(
    WorkSchedule,
    timezone=st.sampled_from(ZONES),
    entries=st.lists(
        st.builds(ScheduleEntry, time_ranges, st.sampled_from((*STATE_NAMES, "Ghost"))),
        max_size=3,
    ).map(tuple),
    otherwise=st.sampled_from(STATE_NAMES),
)
number_sets = st.frozensets(st.sampled_from((*NUMBERS, "+4416329*")), max_size=2)
filters = st.builds(
    InboundFilter,
    blocked=number_sets,
    allowed_only=st.none() | number_sets,
    anonymous=st.sampled_from(list(AnonymousPolicy)),
)


@st.composite
def profiles(draw: st.DrawFn, user_id: str | None = None) -> RoutingProfile:
    states = draw(state_maps())
    return RoutingProfile(
        user_id=user_id or draw(st.sampled_from(USERS)),
        tenant_id="acme",
        terminals=draw(terminals),
        states=states,
        default_state=draw(st.sampled_from((*states, "Ghost"))),
        manual=draw(
            st.none()
            | st.builds(ManualState, st.sampled_from((*STATE_NAMES, "Ghost")), st.none() | instants)
        ),
        schedule=draw(st.none() | schedules),
        logged_out=draw(st.booleans()),
        call_flow=draw(st.none() | call_flows),
        vip_numbers=draw(number_sets),
        vip_state=draw(st.sampled_from(STATE_NAMES)),
        inbound_filter=draw(filters),
        delegates=tuple(draw(st.lists(st.sampled_from(USERS), max_size=3))),
        screening=draw(
            st.builds(
                Screening,
                enabled=st.booleans(),
                ask_name=st.booleans(),
                password=st.none() | st.just("2468"),
            )
        ),
    )


@st.composite
def diverting_profiles(draw: st.DrawFn, user_id: str) -> RoutingProfile:
    """Profiles that mostly pass the call on: delegate fallbacks, redirects to users."""
    profile = draw(profiles(user_id=user_id))
    states = {
        name: AvailabilityState(
            name,
            state.terminal_ids,
            state.ring_mode,
            Fallback(FallbackKind.DELEGATE, target=draw(st.sampled_from(("", *USERS)))),
        )
        for name, state in profile.states.items()
    }
    user_redirects = st.builds(RedirectTarget, st.just(RedirectKind.USER), st.sampled_from(USERS))
    rule = draw(
        st.none()
        | st.builds(
            CallFlowRule,
            st.none(),
            st.just("UTC"),
            st.just(10),
            st.lists(user_redirects, min_size=1, max_size=3).map(tuple),
        )
    )
    return replace(
        profile,
        states=states,
        call_flow=rule,
        logged_out=False,
        inbound_filter=InboundFilter(),
        delegates=tuple(draw(st.lists(st.sampled_from(USERS), min_size=1, max_size=3))),
    )


callers = st.builds(
    Caller,
    number=st.none() | st.sampled_from((*NUMBERS, "+441632960999", "anonymous")),
    internal_user_id=st.none() | st.sampled_from(USERS),
)
contexts = st.builds(
    PlanContext,
    tenant=st.builds(TenantPolicy, st.just("acme"), st.just(frozenset({"Lunch"})), filters),
    divert_chain=st.lists(st.sampled_from(USERS), max_size=4, unique=True).map(tuple),
    delegate_on_demand=st.booleans(),
)

# Ring + Screen + up to 3 redirect legs + Play + the final step.
MAX_STEPS = 1 + 1 + MAX_REDIRECTS + 1 + 1


def assert_well_formed(plan: CallPlan, profile: RoutingProfile) -> None:
    assert 1 <= len(plan.steps) <= MAX_STEPS
    assert isinstance(plan.steps[-1], FINAL_STEP_TYPES)
    assert not any(isinstance(s, FINAL_STEP_TYPES) for s in plan.steps[:-1])
    assert plan.reasons
    for step in plan.steps:
        if isinstance(step, Screen):
            assert isinstance(plan.steps[plan.steps.index(step) + 1], Ring)
        if isinstance(step, Ring):
            assert step.legs
    for terminal_id in plan.rung_terminals():
        if terminal_id.startswith("redirect-"):
            continue
        terminal = profile.terminal(terminal_id)
        assert terminal is not None, f"rang missing terminal {terminal_id}"
        assert terminal.status is DeviceStatus.ACTIVE, f"rang {terminal.status} {terminal_id}"


@settings(max_examples=400, deadline=None)
@given(profiles(), callers, instants, contexts)
def test_every_plan_ends_in_one_final_step_and_rings_only_active_terminals(
    profile: RoutingProfile, caller: Caller, at: datetime, context: PlanContext
) -> None:
    plan = plan_call(profile, caller, at, context)
    assert_well_formed(plan, profile)
    assert plan == plan_call(profile, caller, at, context)
    json.dumps(explain(profile, caller, at, context))


@settings(max_examples=300, deadline=None)
@given(profiles(), callers, instants, contexts)
def test_a_blocked_caller_never_rings_anyone(
    profile: RoutingProfile, caller: Caller, at: datetime, context: PlanContext
) -> None:
    if caller.anonymous:
        return
    number = caller.number or ""
    blocked = InboundFilter(blocked=frozenset({number}))
    # Blocked by the tenant, or by the user (whatever the tenant's own filter says).
    for ctx, prof in (
        (PlanContext(TenantPolicy("acme", inbound_filter=blocked)), profile),
        (context, replace(profile, inbound_filter=blocked)),
    ):
        plan = plan_call(prof, caller, at, ctx)
        assert plan.rung_terminals() == ()
        assert not any(isinstance(s, Divert) for s in plan.steps)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries({u: profiles(user_id=u) | diverting_profiles(u) for u in USERS}),
    st.sampled_from(USERS),
    callers,
    instants,
)
def test_following_diverts_ends_within_three_redirects_and_never_revisits_a_user(
    directory: dict[str, RoutingProfile], first: str, caller: Caller, at: datetime
) -> None:
    """Simulate the executor: a USER/DELEGATE divert continues with that user's plan."""
    chain: tuple[str, ...] = ()
    user = first
    plans = 0
    while True:
        plans += 1
        profile = directory[user]
        plan = plan_call(profile, caller, at, PlanContext(TENANT, divert_chain=chain))
        assert_well_formed(plan, profile)
        final = plan.final
        if not (isinstance(final, Divert) and final.kind in (DivertKind.USER, DivertKind.DELEGATE)):
            break
        chain = (*chain, user)
        assert final.target not in chain
        if final.target not in directory:
            break  # not a user ("sales"): the executor's lookup fails into the fallback
        user = final.target
    assert len(chain) <= MAX_REDIRECTS
    assert plans <= MAX_REDIRECTS + 1


# --- schedules across DST ------------------------------------------------------------------

DST_ZONES = ("Europe/London", "America/New_York", "Australia/Sydney")
# Days around the 2026 transitions in those zones, plus ordinary days.
DST_DAYS = [
    date(2026, 3, 8),
    date(2026, 3, 29),
    date(2026, 4, 5),
    date(2026, 10, 4),
    date(2026, 10, 25),
    date(2026, 11, 1),
]
local_days = st.sampled_from(DST_DAYS).flatmap(
    lambda d: st.integers(-1, 1).map(lambda n: d + timedelta(days=n))
) | st.dates(date(2020, 1, 1), date(2030, 12, 31))


def office(zone: str, start: time, end: time) -> RoutingProfile:
    schedule = WorkSchedule(
        zone, (ScheduleEntry(TimeRange(frozenset(Weekday), start, end), "Available"),), "Busy"
    )
    return replace(alice(), schedule=schedule)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(DST_ZONES),
    local_days,
    st.integers(0, 23),
    st.integers(0, 59),
    st.sampled_from((0, 1)),
    minutes,
    minutes,
)
def test_schedules_follow_the_wall_clock_across_dst(
    zone: str, day: date, hour: int, minute: int, fold: int, start: time, end: time
) -> None:
    tz = ZoneInfo(zone)
    wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz, fold=fold)
    at = wall.astimezone(UTC)
    if at.astimezone(tz).replace(tzinfo=None) != wall.replace(tzinfo=None):
        return  # a wall time skipped by spring-forward: no instant has it
    now = time(hour, minute)
    # A range that does not end after its start runs past midnight (all day when equal).
    expected = start <= now < end if start < end else (now >= start or now < end)
    plan = plan_call(office(zone, start, end), Caller("+15550100"), at, PlanContext(TENANT))
    assert plan.state == ("Available" if expected else "Busy"), plan.reasons


def test_nine_o_clock_is_nine_o_clock_in_summer_and_in_winter() -> None:
    profile = office("Europe/London", time(9, 0), time(17, 30))
    caller, ctx = Caller("+15550100"), PlanContext(TENANT)
    # 08:30 UTC is 09:30 BST the day after spring-forward, but 08:30 GMT the day before.
    assert plan_call(profile, caller, datetime(2026, 3, 30, 8, 30, tzinfo=UTC), ctx).state == (
        "Available"
    )
    assert plan_call(profile, caller, datetime(2026, 3, 28, 8, 30, tzinfo=UTC), ctx).state == (
        "Busy"
    )
    # Both 01:30s of the autumn fall-back night are inside a 01:00-02:00 period.
    night = office("Europe/London", time(1, 0), time(2, 0))
    for utc_hour in (0, 1):  # 01:30 BST = 00:30 UTC; 01:30 GMT = 01:30 UTC
        at = datetime(2026, 10, 25, utc_hour, 30, tzinfo=UTC)
        assert plan_call(night, caller, at, ctx).state == "Available"
