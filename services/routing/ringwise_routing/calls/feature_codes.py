"""Feature codes: what a user dials from their own phone to change their routing (seeds 000,
001, 004): switch the availability state, make this phone the Temp location, log out of
every location (hot desk) and back in, follow the work schedule again.

The one table of codes (docs/routing-policy.md lists it). Each code is a pure change of
plans/changes.py plus the confirmation the caller hears (Asterisk core sounds); the
outbound executor (outbound_call.py) applies it through ProfileSource.change(...,
origin="feature_code").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ringwise_routing.plans import changes
from ringwise_routing.plans.model import BuiltinState, RoutingProfile
from ringwise_routing.plans.validation import FieldError

# Heard after a change that was stored.
CONFIRM_STATE = ("sound:activated",)
CONFIRM_SCHEDULE = ("sound:enabled",)
CONFIRM_TEMP_SET = ("sound:location", "sound:activated")
CONFIRM_TEMP_CLEARED = ("sound:location", "sound:removed")
CONFIRM_LOGGED_OUT = ("sound:agent-loggedoff",)
CONFIRM_LOGGED_IN = ("sound:agent-loginok",)
# Heard when the change cannot be made: the code is unknown, the profile refuses it (e.g.
# already 5 terminals), or the profile store cannot be reached.
PROMPT_UNKNOWN_CODE = ("sound:im-sorry", "sound:pbx-invalid")
PROMPT_REFUSED = ("sound:im-sorry", "sound:cannot-complete-as-dialed")
PROMPT_UNAVAILABLE = ("sound:im-sorry", "sound:please-try-call-later")
ALL_PROMPTS = (
    CONFIRM_STATE,
    CONFIRM_SCHEDULE,
    CONFIRM_TEMP_SET,
    CONFIRM_TEMP_CLEARED,
    CONFIRM_LOGGED_OUT,
    CONFIRM_LOGGED_IN,
    PROMPT_UNKNOWN_CODE,
    PROMPT_REFUSED,
    PROMPT_UNAVAILABLE,
)


@dataclass(frozen=True)
class CallingPhone:
    """The device the code was dialled from: its own E.164 number if it has one (an
    external device), else how Asterisk rings it."""

    device_id: str
    number: str
    dial_string: str


Change = Callable[[RoutingProfile, CallingPhone], RoutingProfile | list[FieldError]]


@dataclass(frozen=True)
class FeatureCode:
    code: str
    meaning: str
    change: Change
    confirmation: tuple[str, ...]


def _state(name: str) -> Change:
    return lambda profile, _phone: changes.set_state(profile, name)


def _temp_here(profile: RoutingProfile, phone: CallingPhone) -> RoutingProfile | list[FieldError]:
    if phone.number:
        return changes.set_temporary_location(profile, phone.number)
    return changes.set_temporary_device(profile, phone.dial_string)


def _follow_schedule(profile: RoutingProfile, _phone: CallingPhone) -> RoutingProfile:
    return changes.follow_schedule(profile)


def _clear_temp(profile: RoutingProfile, _phone: CallingPhone) -> RoutingProfile:
    return changes.clear_temporary_location(profile)


def _log_out(profile: RoutingProfile, _phone: CallingPhone) -> RoutingProfile:
    return changes.log_out(profile)


def _log_in(profile: RoutingProfile, _phone: CallingPhone) -> RoutingProfile:
    return changes.log_in(profile)


_AVAILABLE, _BUSY, _TRAVELLING, _HOLIDAY = (s.value for s in BuiltinState)

FEATURE_CODES: dict[str, FeatureCode] = {
    code.code: code
    for code in (
        FeatureCode("*20", "follow the work schedule again", _follow_schedule, CONFIRM_SCHEDULE),
        FeatureCode("*21", "availability Available", _state(_AVAILABLE), CONFIRM_STATE),
        FeatureCode("*22", "availability Busy", _state(_BUSY), CONFIRM_STATE),
        FeatureCode("*23", "availability Travelling", _state(_TRAVELLING), CONFIRM_STATE),
        FeatureCode("*24", "availability Holiday", _state(_HOLIDAY), CONFIRM_STATE),
        FeatureCode("*30", "no Temp location any more", _clear_temp, CONFIRM_TEMP_CLEARED),
        FeatureCode("*31", "Temp location: this phone", _temp_here, CONFIRM_TEMP_SET),
        FeatureCode("*40", "location None (hot-desk log-out)", _log_out, CONFIRM_LOGGED_OUT),
        FeatureCode("*41", "log in again", _log_in, CONFIRM_LOGGED_IN),
    )
}


def is_feature_code(dialled: str) -> bool:
    """Anything starting with "*" is a feature code (known or not); never a number."""
    return dialled.startswith("*")


def feature_code(dialled: str) -> FeatureCode | None:
    """The code for a dialled string ("#" at the end, as some phones send it, is ignored)."""
    return FEATURE_CODES.get(dialled.rstrip("#"))
