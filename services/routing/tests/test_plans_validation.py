"""Configuration checks: each bad profile gets the field error the API will return as a 4xx."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, time

import pytest
from ringwise_routing.plans.examples import OFFICE_HOURS, TENANT, VIP_NUMBER, alice
from ringwise_routing.plans.model import (
    WORK_DAYS,
    AvailabilityState,
    CallFlowRule,
    DeviceStatus,
    Fallback,
    FallbackKind,
    InboundFilter,
    LocationKind,
    ManualState,
    RedirectKind,
    RedirectTarget,
    RingMode,
    RoutingProfile,
    ScheduleEntry,
    Screening,
    TenantPolicy,
    Terminal,
    TimeRange,
    WorkSchedule,
)
from ringwise_routing.plans.validation import FieldError, find_divert_loops, validate_profile

Edit = Callable[[RoutingProfile], RoutingProfile]


def terminals(n: int) -> tuple[Terminal, ...]:
    return tuple(Terminal(f"t{i}", LocationKind.TEMP, f"PJSIP/t{i}") for i in range(n))


def with_available(**changes: object) -> Edit:
    def edit(p: RoutingProfile) -> RoutingProfile:
        states = dict(p.states)
        states["Available"] = replace(states["Available"], **changes)  # type: ignore[arg-type]
        return replace(p, states=states)

    return edit


def rule(*redirects: RedirectTarget, tz: str = "Europe/London", timeout: int = 5) -> Edit:
    return lambda p: replace(p, call_flow=CallFlowRule(None, tz, timeout, redirects))


BAD = [
    ("user adds a sixth terminal", lambda p: replace(p, terminals=terminals(6)), "terminals"),
    (
        "user lists six terminals in one state",
        lambda p: with_available(terminal_ids=tuple(f"t{i}" for i in range(6)))(
            replace(p, terminals=terminals(5))
        ),
        "states.Available.terminal_ids",
    ),
    (
        "user rings a terminal that does not exist",
        with_available(terminal_ids=("t-desk", "t-fax")),
        "states.Available.terminal_ids",
    ),
    (
        "user sets a 2 s ring timeout",
        lambda p: replace(p, terminals=(replace(p.terminals[0], ring_timeout_s=2),)),
        "terminals[0].ring_timeout_s",
    ),
    (
        "user chooses a state the tenant does not define",
        lambda p: replace(p, manual=ManualState("Snorkelling")),
        "manual.state",
    ),
    (
        "tenant admin adds a state that is not one of the tenant's",
        lambda p: replace(
            p,
            states={
                **p.states,
                "Gym": AvailabilityState(
                    "Gym", (), RingMode.SEQUENTIAL, Fallback(FallbackKind.VOICEMAIL)
                ),
            },
        ),
        "states.Gym.name",
    ),
    (
        "supervisor writes a schedule in an unknown time zone",
        lambda p: replace(p, schedule=replace(OFFICE_HOURS, timezone="Mars/Olympus_Mons")),
        "schedule.timezone",
    ),
    (
        "supervisor writes a schedule with no days",
        lambda p: replace(
            p,
            schedule=WorkSchedule(
                "Europe/London",
                (ScheduleEntry(TimeRange(frozenset(), time(9), time(17)), "Available"),),
                "Busy",
            ),
        ),
        "schedule.entries[0].days",
    ),
    (
        "supervisor writes a schedule time with seconds",
        lambda p: replace(
            p,
            schedule=WorkSchedule(
                "Europe/London",
                (ScheduleEntry(TimeRange(WORK_DAYS, time(9, 0, 30), time(17)), "Available"),),
                "Busy",
            ),
        ),
        "schedule.entries[0].start",
    ),
    (
        "supervisor schedules an unknown state",
        lambda p: replace(p, schedule=replace(OFFICE_HOURS, otherwise="Asleep")),
        "schedule.otherwise",
    ),
    (
        "admin adds a fourth redirect",
        rule(*(RedirectTarget(RedirectKind.EXTERNAL, f"+1555010{i}") for i in range(4))),
        "call_flow.redirects",
    ),
    (
        "admin redirects a user's calls to that same user",
        rule(RedirectTarget(RedirectKind.USER, "alice")),
        "call_flow.redirects[0].target",
    ),
    (
        "admin redirects to an undialable number",
        rule(RedirectTarget(RedirectKind.EXTERNAL, "call-me-maybe")),
        "call_flow.redirects[0].target",
    ),
    (
        "admin sets a call-flow rule in an unknown time zone",
        rule(RedirectTarget(RedirectKind.VOICEMAIL), tz="Europe/Atlantis"),
        "call_flow.timezone",
    ),
    (
        "admin sets a 500 s call timeout",
        rule(RedirectTarget(RedirectKind.VOICEMAIL), timeout=500),
        "call_flow.call_timeout_s",
    ),
    (
        "user makes herself her own delegate",
        lambda p: replace(p, delegates=("alice",)),
        "delegates",
    ),
    (
        "user diverts to a delegate without having one",
        lambda p: with_available(fallback=Fallback(FallbackKind.DELEGATE))(
            replace(p, delegates=())
        ),
        "states.Available.fallback",
    ),
    (
        "user forwards to a team without naming it",
        with_available(fallback=Fallback(FallbackKind.TEAM)),
        "states.Available.fallback.target",
    ),
    (
        "user blocks something that is not a number",
        lambda p: replace(p, inbound_filter=InboundFilter(blocked=frozenset({"spam*calls"}))),
        "inbound_filter.blocked",
    ),
    (
        "user blocks a VIP",
        lambda p: replace(p, inbound_filter=InboundFilter(blocked=frozenset({VIP_NUMBER}))),
        "vip_numbers",
    ),
    (
        "user sets a call password of letters",
        lambda p: replace(p, screening=Screening(enabled=True, password="secret")),
        "screening.password",
    ),
    (
        "user's temporary choice ends at a time without a zone",
        lambda p: replace(p, manual=ManualState("Busy", until=datetime(2026, 11, 25, 12))),
        "manual.until",
    ),
]


@pytest.mark.parametrize(("behaviour", "edit", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_configuration_gets_a_field_error(behaviour: str, edit: Edit, field: str) -> None:
    errors = validate_profile(edit(alice()), TENANT)
    assert field in [e.field for e in errors], errors
    assert all(e.message for e in errors)


def test_the_sample_profile_is_valid() -> None:
    profile = replace(alice(), schedule=OFFICE_HOURS, screening=Screening(True, password="2468"))
    assert validate_profile(profile, TENANT) == []


def test_tenant_defined_state_is_accepted_for_its_tenant() -> None:
    gym = AvailabilityState("Gym", (), RingMode.SEQUENTIAL, Fallback(FallbackKind.VOICEMAIL))
    profile = replace(alice(), states={**alice().states, "Gym": gym}, manual=ManualState("Gym"))
    tenant = TenantPolicy("acme", custom_states=frozenset({"Gym"}))
    assert validate_profile(profile, tenant) == []


def test_blocked_and_deleted_terminals_are_still_valid_configuration() -> None:
    # A device removed elsewhere must not make the whole profile unsaveable: the engine skips it.
    profile = replace(
        alice(), terminals=tuple(replace(t, status=DeviceStatus.DELETED) for t in alice().terminals)
    )
    assert validate_profile(profile, TENANT) == []


def delegating(user: str, *delegates: str) -> RoutingProfile:
    profile = replace(alice(), user_id=user, delegates=delegates)
    busy = replace(profile.states["Busy"], fallback=Fallback(FallbackKind.DELEGATE))
    return replace(profile, states={**profile.states, "Busy": busy})


def test_delegate_loop_is_refused_at_configuration_time() -> None:
    profiles = {
        "alice": delegating("alice", "bob"),
        "bob": delegating("bob", "carol"),
        "carol": delegating("carol", "alice"),
    }
    assert find_divert_loops(profiles, ["alice"]) == [
        FieldError("delegates", "divert loop: alice -> bob -> carol -> alice")
    ]


def test_redirect_loop_through_a_call_flow_rule_is_refused() -> None:
    alice_rule = rule(RedirectTarget(RedirectKind.USER, "bob"))(alice())
    profiles = {"alice": alice_rule, "bob": delegating("bob", "alice")}
    errors = find_divert_loops(profiles, ["bob"])
    assert [e.message for e in errors] == ["divert loop: bob -> alice -> bob"]


def test_a_chain_without_a_loop_is_accepted() -> None:
    profiles = {
        "alice": delegating("alice", "bob"),
        "bob": delegating("bob", "carol"),
        "carol": delegating("carol"),
    }
    assert find_divert_loops(profiles, ["alice", "bob", "carol"]) == []


def test_a_loop_elsewhere_is_not_blamed_on_an_unrelated_change() -> None:
    profiles = {
        "bob": delegating("bob", "carol"),
        "carol": delegating("carol", "bob"),
        "dave": delegating("dave"),
    }
    assert find_divert_loops(profiles, ["dave"]) == []
    assert len(find_divert_loops(profiles, ["bob", "carol"])) == 1
