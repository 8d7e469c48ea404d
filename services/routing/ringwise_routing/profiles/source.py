"""Where call handling gets a user's routing from: the seam between the stored profiles
(profiles/store.py, the API) and the ARI executors (calls/).

`ProfileSource.routing_for(user)` takes what the directory said about the user (a
ResolveNumberReply: devices with their dial strings, smartnumber, extension, CLIs) and
returns the policy inputs (plans/model.py and plans/outbound.py) with every terminal's dial
string filled in. `default_routing()` is what a user without a stored profile gets: every
usable device of theirs rung together in Available for the directory's ring timeout, then
voicemail; Busy and Holiday straight to voicemail (seed 000's four states).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ringwise.directory.v1 import resolve_pb2

from ringwise_routing.plans.model import (
    DEFAULT_LEG_TIMEOUT_S,
    MAX_LEG_TIMEOUT_S,
    MAX_TERMINALS,
    MIN_LEG_TIMEOUT_S,
    LocationKind,
    RingMode,
    RoutingProfile,
    TenantPolicy,
    Terminal,
    standard_states,
)
from ringwise_routing.plans.outbound import OutboundProfile, TenantDialling

UserReply = resolve_pb2.ResolveNumberReply


@dataclass(frozen=True)
class UserRouting:
    """Everything needed to plan a call to or from one user."""

    profile: RoutingProfile  # terminals carry dial strings; unusable ones are not ACTIVE
    outbound: OutboundProfile
    tenant: TenantPolicy
    dialling: TenantDialling


ProfileChange = Callable[[RoutingProfile], RoutingProfile]


class ProfileSource(Protocol):
    async def routing_for(self, user: UserReply) -> UserRouting:
        """The user's routing now (stored profile or the default); never raises for a user
        without a profile. Raises only when the store cannot be read at all."""
        ...

    async def change(
        self, user: UserReply, change: ProfileChange, *, origin: str
    ) -> RoutingProfile:
        """Apply a user's own change (plans/changes.py: feature code, app) to the stored
        profile, validate and store it; returns the new profile. `origin` is for the audit
        ("feature_code", "api"). A result that breaks a rule raises
        profiles.document.DocumentInvalid (its `errors` say which); nothing is stored then.
        A plans/changes.py function returning field errors should raise it the same way."""
        ...


def leg_timeout(seconds: int) -> int:
    if seconds <= 0:
        return DEFAULT_LEG_TIMEOUT_S
    return max(MIN_LEG_TIMEOUT_S, min(MAX_LEG_TIMEOUT_S, seconds))


def device_dial_string(device: resolve_pb2.Device, trunk_dial: Callable[[str], str]) -> str:
    """How Asterisk reaches a directory device: its own dial string, or an external number
    through the PSTN trunk ("" when it cannot be reached)."""
    if device.dial_string:
        return device.dial_string
    if device.kind == "external" and device.number:
        return trunk_dial(device.number)
    return ""


def _location(label: str) -> LocationKind:
    for kind in LocationKind:
        if label.strip().lower() == kind.value.lower():
            return kind
    return LocationKind.DESK


def default_routing(user: UserReply, trunk_dial: Callable[[str], str]) -> UserRouting:
    timeout = leg_timeout(user.ring_timeout_s)
    terminals = tuple(
        Terminal(device.device_id, _location(device.label), dial, timeout)
        for device in user.devices
        if (dial := device_dial_string(device, trunk_dial))
    )[:MAX_TERMINALS]
    ids = tuple(t.terminal_id for t in terminals)
    profile = RoutingProfile(
        user_id=user.user_id,
        tenant_id=user.tenant_id,
        terminals=terminals,
        states=standard_states(ids, ring_mode=RingMode.SIMULTANEOUS),
    )
    outbound = OutboundProfile(
        user_id=user.user_id,
        smartnumber=user.smartnumber,
        designated_number=user.outbound_numbers[0] if user.outbound_numbers else None,
    )
    return UserRouting(
        profile=profile,
        outbound=outbound,
        tenant=TenantPolicy(user.tenant_id),
        dialling=TenantDialling(allowed_clis=frozenset(user.allowed_clis)),
    )
