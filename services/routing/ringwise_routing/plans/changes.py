"""Changes a user makes to their own routing, by API, app or feature code from their phone
(seed 001 "Set your location using your telephone"): pure functions from a profile to a new
profile, or field errors. The caller stores the result (and announces it) after checking it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from .engine import normalize_number
from .model import (
    MAX_TERMINALS,
    AvailabilityState,
    DeviceStatus,
    LocationKind,
    ManualState,
    RoutingProfile,
    Terminal,
)
from .validation import FieldError

TEMP_TERMINAL_ID = "t-temp"


def set_state(
    profile: RoutingProfile, state: str, until: datetime | None = None
) -> RoutingProfile | list[FieldError]:
    """Choose an availability state by hand (until `until`, or until changed)."""
    errors: list[FieldError] = []
    if state not in profile.states:
        errors.append(FieldError("state", f"unknown availability state {state}"))
    if until is not None and until.tzinfo is None:
        errors.append(FieldError("until", "give a time zone (or UTC)"))
    if errors:
        return errors
    return replace(profile, manual=ManualState(state, until))


def follow_schedule(profile: RoutingProfile) -> RoutingProfile:
    """Drop the manual choice: the work schedule (or the default state) applies again."""
    return replace(profile, manual=None)


def set_temporary_location(
    profile: RoutingProfile, calling_number: str, *, ring_timeout_s: int = 30
) -> RoutingProfile | list[FieldError]:
    """Make the phone the user is calling from their Temp location and ring it first in
    every state that rings anyone (the seed's "automatically detect the phone number you are
    calling from"). Logging in again clears a hot-desk log-out."""
    number = normalize_number(calling_number)
    if not number.startswith("+") or len(number) < 8:
        return [FieldError("number", f"{calling_number!r} is not a full international number")]
    return _with_temp_terminal(profile, number, ring_timeout_s)


def set_temporary_device(
    profile: RoutingProfile, dial_string: str
) -> RoutingProfile | list[FieldError]:
    """The same from a phone of the platform (a desk or hot-desk SIP phone, by feature code):
    that phone is one of the user's terminals; it becomes the Temp location, rung first in
    every state that rings anyone. A Temp number set before is dropped (one Temp location)."""
    here = next(
        (
            t
            for t in profile.terminals
            if t.dial_string == dial_string and t.status is DeviceStatus.ACTIVE
        ),
        None,
    )
    if here is None:
        return [FieldError("terminals", "the calling phone is not one of the user's locations")]
    base = clear_temporary_location(profile)
    terminals = tuple(
        replace(t, kind=LocationKind.TEMP) if t.terminal_id == here.terminal_id else t
        for t in base.terminals
    )
    return replace(
        base,
        terminals=terminals,
        states=_ring_first(base, here.terminal_id),
        logged_out=False,
    )


def _ring_first(profile: RoutingProfile, terminal_id: str) -> dict[str, AvailabilityState]:
    return {
        name: replace(
            state,
            terminal_ids=(terminal_id, *(t for t in state.terminal_ids if t != terminal_id))[
                :MAX_TERMINALS
            ],
        )
        if state.terminal_ids
        else state
        for name, state in profile.states.items()
    }


def _with_temp_terminal(
    profile: RoutingProfile, dial_string: str, ring_timeout_s: int
) -> RoutingProfile | list[FieldError]:
    others = tuple(t for t in profile.terminals if t.terminal_id != TEMP_TERMINAL_ID)
    if len(others) >= MAX_TERMINALS:
        return [FieldError("terminals", f"already {MAX_TERMINALS} terminals: remove one first")]
    temp = Terminal(TEMP_TERMINAL_ID, LocationKind.TEMP, dial_string, ring_timeout_s)
    profile = replace(profile, terminals=(*others, temp))
    return replace(profile, states=_ring_first(profile, TEMP_TERMINAL_ID), logged_out=False)


def clear_temporary_location(profile: RoutingProfile) -> RoutingProfile:
    states = {
        name: replace(
            state, terminal_ids=tuple(t for t in state.terminal_ids if t != TEMP_TERMINAL_ID)
        )
        for name, state in profile.states.items()
    }
    terminals = tuple(t for t in profile.terminals if t.terminal_id != TEMP_TERMINAL_ID)
    return replace(profile, terminals=terminals, states=states)


def log_out(profile: RoutingProfile) -> RoutingProfile:
    """Location "None" / hot-desk log-out: every call goes to voicemail until logged in."""
    return replace(profile, logged_out=True)


def log_in(profile: RoutingProfile) -> RoutingProfile:
    return replace(profile, logged_out=False)


def remove_device(profile: RoutingProfile, terminal_id: str) -> RoutingProfile:
    """A device deleted in the directory: kept as DELETED so the engine never rings it, and
    the profile stays valid until the user edits it."""
    terminals = tuple(
        replace(t, status=DeviceStatus.DELETED) if t.terminal_id == terminal_id else t
        for t in profile.terminals
    )
    return replace(profile, terminals=terminals)
