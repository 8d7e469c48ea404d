"""The pure pieces of calls placed by phones: the feature-code table, the talk-time limit
against billing's grants, which phone is calling. One row per behaviour."""

from __future__ import annotations

import pytest
from ringwise.billing.v1 import credit_pb2
from ringwise_routing.calls import feature_codes
from ringwise_routing.calls.feature_codes import CallingPhone
from ringwise_routing.calls.outbound_call import endpoint_name
from ringwise_routing.calls.talk_time import TalkTime
from ringwise_routing.plans import changes
from ringwise_routing.plans.examples import TENANT, alice
from ringwise_routing.plans.model import (
    LocationKind,
    RoutingProfile,
    Terminal,
    standard_states,
)
from ringwise_routing.plans.validation import FieldError, validate_profile

Reply = credit_pb2.AuthoriseReply
CAP = 14400.0

DESK_PHONE = CallingPhone("d-desk", number="", dial_string="PJSIP/alice-desk")
MOBILE = CallingPhone("d-mobile", number="+447700900001", dial_string="")


def desk_user() -> RoutingProfile:
    """A user with a desk phone and a softphone, both rung in Available."""
    terminals = (
        Terminal("d-desk", LocationKind.DESK, "PJSIP/alice-desk", 20),
        Terminal("d-soft", LocationKind.DESK, "PJSIP/alice-soft", 20),
    )
    return RoutingProfile(
        user_id="alice",
        tenant_id="acme",
        terminals=terminals,
        states=standard_states(("d-desk", "d-soft")),
    )


def applied(code: str, profile: RoutingProfile, phone: CallingPhone) -> RoutingProfile:
    found = feature_codes.feature_code(code)
    assert found is not None
    result = found.change(profile, phone)
    assert isinstance(result, RoutingProfile), result
    return result


# -- feature codes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "state"),
    [("*21", "Available"), ("*22", "Busy"), ("*23", "Travelling"), ("*24", "Holiday")],
)
def test_a_state_code_chooses_that_availability_by_hand(code: str, state: str) -> None:
    profile = applied(code, alice(), DESK_PHONE)
    assert profile.manual is not None and profile.manual.state == state
    assert profile.manual.until is None


def test_star_20_follows_the_work_schedule_again() -> None:
    busy = applied("*22", alice(), DESK_PHONE)
    assert applied("*20", busy, DESK_PHONE).manual is None


def test_star_40_logs_out_and_star_41_logs_back_in() -> None:
    out = applied("*40", alice(), DESK_PHONE)
    assert out.logged_out
    assert not applied("*41", out, DESK_PHONE).logged_out


def test_star_31_from_a_desk_phone_makes_it_the_temp_location_rung_first() -> None:
    profile = applied("*31", applied("*40", desk_user(), DESK_PHONE), DESK_PHONE)
    desk = next(t for t in profile.terminals if t.terminal_id == "d-desk")
    assert desk.kind is LocationKind.TEMP
    assert profile.states["Available"].terminal_ids[0] == "d-desk"
    assert not profile.logged_out  # choosing a location logs in again
    assert validate_profile(profile, TENANT) == []


def test_star_31_from_the_second_phone_moves_temp_there_and_drops_a_temp_number() -> None:
    with_number = changes.set_temporary_location(desk_user(), "+441632960999")
    assert isinstance(with_number, RoutingProfile)
    soft = CallingPhone("d-soft", number="", dial_string="PJSIP/alice-soft")
    profile = applied("*31", with_number, soft)
    assert [t.terminal_id for t in profile.terminals] == ["d-desk", "d-soft"]
    assert profile.states["Available"].terminal_ids == ("d-soft", "d-desk")


def test_star_31_from_a_phone_with_its_own_number_makes_that_number_temp() -> None:
    profile = applied("*31", alice(), MOBILE)
    temp = next(t for t in profile.terminals if t.terminal_id == changes.TEMP_TERMINAL_ID)
    assert temp.dial_string == "+447700900001"


def test_star_31_from_a_phone_that_is_not_the_users_is_refused() -> None:
    stranger = CallingPhone("d-other", number="", dial_string="PJSIP/bob-desk")
    code = feature_codes.feature_code("*31")
    assert code is not None
    assert code.change(desk_user(), stranger) == [
        FieldError("terminals", "the calling phone is not one of the user's locations")
    ]


def test_star_30_removes_a_temp_number() -> None:
    temp = applied("*31", alice(), MOBILE)
    cleared = applied("*30", temp, MOBILE)
    assert changes.TEMP_TERMINAL_ID not in {t.terminal_id for t in cleared.terminals}


@pytest.mark.parametrize(
    ("dialled", "known"),
    [("*22", True), ("*22#", True), ("*99", False), ("*", False), ("**22", False)],
)
def test_codes_are_looked_up_as_dialled_with_a_trailing_hash_ignored(
    dialled: str, known: bool
) -> None:
    assert feature_codes.is_feature_code(dialled)
    assert (feature_codes.feature_code(dialled) is not None) is known


def test_numbers_are_never_feature_codes() -> None:
    assert not feature_codes.is_feature_code("0033155667788")
    assert not feature_codes.is_feature_code("+442079460000")


def test_every_code_has_a_confirmation_and_a_meaning() -> None:
    for code in feature_codes.FEATURE_CODES.values():
        assert code.code.startswith("*") and code.meaning
        assert code.confirmation and all(p.startswith("sound:") for p in code.confirmation)


# -- which phone is calling -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "endpoint"),
    [
        ("PJSIP/alice-desk-0000002a", "alice-desk"),
        ("PJSIP/rwb9250da08806241c640d-00000001", "rwb9250da08806241c640d"),
        ("PJSIP/pstn", ""),
        ("Local/1000@ringwise-mwi-00000001;1", ""),
        ("", ""),
    ],
)
def test_the_calling_endpoint_is_the_channel_name_without_its_sequence(
    channel: str, endpoint: str
) -> None:
    assert endpoint_name(channel) == endpoint


# -- talk time --------------------------------------------------------------------------------


def grant(seconds: int, warn_at: int = 0, allow: bool = True) -> Reply:
    return Reply(
        decision=Reply.DECISION_ALLOW if allow else Reply.DECISION_DENY,
        max_duration_s=seconds,
        warn_at_s=warn_at,
    )


def test_a_quota_asks_for_more_at_its_warning_time() -> None:
    talk = TalkTime.from_grant(grant(600, warn_at=570), CAP)
    assert (talk.limit_s, talk.ask_at_s, talk.next_deadline()) == (600, 570, 570)


def test_a_grant_too_short_for_a_warning_asks_half_way() -> None:
    talk = TalkTime.from_grant(grant(4), CAP)
    assert (talk.limit_s, talk.ask_at_s) == (4, 2)


def test_no_limit_from_billing_means_the_platform_cap() -> None:
    talk = TalkTime.from_grant(grant(0), CAP)
    assert (talk.limit_s, talk.ask_at_s) == (CAP, None)


def test_an_extension_moves_the_limit_and_the_next_ask() -> None:
    talk = TalkTime.from_grant(grant(600, warn_at=570), CAP)
    talk.extended(grant(1200, warn_at=1170), 570, fail_open=False, cap_s=CAP)
    assert (talk.limit_s, talk.ask_at_s, talk.warn) == (1200, 1170, False)


def test_a_refused_extension_warns_and_keeps_the_time_granted() -> None:
    talk = TalkTime.from_grant(grant(4), CAP)
    talk.extended(grant(4, allow=False), 2, fail_open=False, cap_s=CAP)
    assert (talk.limit_s, talk.ask_at_s, talk.warn) == (4, None, True)


def test_an_extension_granting_nothing_more_counts_as_refused() -> None:
    talk = TalkTime.from_grant(grant(60, warn_at=30), CAP)
    talk.extended(grant(60, warn_at=30), 30, fail_open=False, cap_s=CAP)
    assert (talk.limit_s, talk.ask_at_s, talk.warn) == (60, None, True)


def test_billing_silent_on_an_extension_fail_closed_ends_at_the_grant() -> None:
    talk = TalkTime.from_grant(grant(600, warn_at=570), CAP)
    talk.extended(None, 570, fail_open=False, cap_s=CAP)
    assert (talk.limit_s, talk.ask_at_s, talk.warn) == (600, None, True)


def test_billing_silent_on_an_extension_fail_open_carries_on_to_the_cap() -> None:
    talk = TalkTime.from_grant(grant(600, warn_at=570), CAP)
    talk.extended(None, 570, fail_open=True, cap_s=CAP)
    assert (talk.limit_s, talk.ask_at_s, talk.warn) == (CAP, None, False)


def test_an_extension_up_to_the_cap_stops_asking() -> None:
    talk = TalkTime.from_grant(grant(600, warn_at=570), 900)
    talk.extended(grant(900, warn_at=870), 570, fail_open=False, cap_s=900)
    assert (talk.limit_s, talk.ask_at_s) == (900, None)
