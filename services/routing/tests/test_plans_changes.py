"""Changes a user makes by phone or API, then what a call does afterwards."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from ringwise_routing.plans import changes
from ringwise_routing.plans.engine import plan_call
from ringwise_routing.plans.examples import CONTEXT, STRANGER, TENANT, VIP, WED_10_00, alice
from ringwise_routing.plans.explain import plan_summary
from ringwise_routing.plans.model import LocationKind, RoutingProfile, Terminal
from ringwise_routing.plans.validation import FieldError, validate_profile


def ok(result: RoutingProfile | list[FieldError]) -> RoutingProfile:
    assert isinstance(result, RoutingProfile), result
    assert validate_profile(result, TENANT) == []
    return result


def refused_fields(result: RoutingProfile | list[FieldError]) -> list[str]:
    assert isinstance(result, list), result
    return [e.field for e in result]


def test_user_sets_busy_by_phone_and_callers_hear_the_busy_greeting() -> None:
    profile = ok(changes.set_state(alice(), "Busy"))
    assert plan_summary(plan_call(profile, STRANGER, WED_10_00, CONTEXT)) == ["voicemail busy"]
    back = changes.follow_schedule(profile)
    assert plan_summary(plan_call(back, STRANGER, WED_10_00, CONTEXT))[-1] == (
        "voicemail available"
    )


def test_user_cannot_choose_a_state_that_does_not_exist() -> None:
    assert changes.set_state(alice(), "Snorkelling") == [
        FieldError("state", "unknown availability state Snorkelling")
    ]
    naive = datetime(2026, 11, 25, 12)
    assert refused_fields(changes.set_state(alice(), "Busy", naive)) == ["until"]


def test_user_calling_from_a_hotel_phone_makes_it_her_temp_location() -> None:
    profile = ok(changes.set_temporary_location(alice(), "+33 1 40 00 00 00"))
    assert plan_summary(plan_call(profile, STRANGER, WED_10_00, CONTEXT)) == [
        "ring sequential t-temp/30,t-desk/15,t-mobile/20",
        "voicemail available",
    ]
    # Busy still rings nobody; setting it again replaces the old Temp number.
    assert profile.states["Busy"].terminal_ids == ()
    again = ok(changes.set_temporary_location(profile, "+15550100"))
    temp = again.terminal("t-temp")
    assert temp is not None
    assert temp.dial_string == "+15550100"
    assert [t.terminal_id for t in again.terminals].count("t-temp") == 1
    cleared = ok(changes.clear_temporary_location(again))
    assert plan_summary(plan_call(cleared, STRANGER, WED_10_00, CONTEXT))[0] == (
        "ring sequential t-desk/15,t-mobile/20"
    )


def test_temp_location_needs_a_full_number_and_a_free_terminal_slot() -> None:
    assert refused_fields(changes.set_temporary_location(alice(), "1234")) == ["number"]
    full = replace(
        alice(),
        terminals=tuple(Terminal(f"t{i}", LocationKind.DESK, f"PJSIP/d{i}") for i in range(5)),
    )
    assert refused_fields(changes.set_temporary_location(full, "+15550100")) == ["terminals"]


def test_hot_desk_log_out_sends_every_call_to_voicemail_until_log_in() -> None:
    out = changes.log_out(alice())
    assert plan_summary(plan_call(out, VIP, WED_10_00, CONTEXT)) == ["voicemail available"]
    assert not changes.log_in(out).logged_out
    back = ok(changes.set_temporary_location(out, "+15550100"))
    assert not back.logged_out


def test_a_deleted_device_stops_ringing_at_once() -> None:
    profile = ok(changes.remove_device(alice(), "t-desk"))
    plan = plan_call(profile, STRANGER, datetime(2026, 11, 25, 10, tzinfo=UTC), CONTEXT)
    assert plan.rung_terminals() == ("t-mobile",)
