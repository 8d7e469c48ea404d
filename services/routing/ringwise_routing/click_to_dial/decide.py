"""Pure decisions of a click-to-dial call, made at the API before anything rings: which of
the user's terminals rings first, and the outbound plan the answered call then runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ringwise_routing.plans.engine import Reason, Reject, resolve_state
from ringwise_routing.plans.model import CAUSE_CALL_REJECTED, DeviceStatus, RoutingProfile, Terminal
from ringwise_routing.plans.outbound import CollectPin, Connect, NumberClass, OutboundPlan


@dataclass(frozen=True)
class NoTerminal:
    """Why the user cannot be rung: `unknown` (from_terminal names no terminal of theirs,
    a 422) or `unreachable` (nothing usable to ring, a 409)."""

    kind: str  # "unknown" | "unreachable"
    detail: str


def usable(terminal: Terminal) -> bool:
    return terminal.status is DeviceStatus.ACTIVE and bool(terminal.dial_string)


def user_terminal(
    profile: RoutingProfile, at: datetime, from_terminal: str | None
) -> Terminal | NoTerminal:
    """The terminal rung first: `from_terminal` if given (any usable terminal of the user's),
    else the first usable one in the ring order of the user's state now."""
    if from_terminal:
        chosen = profile.terminal(from_terminal)
        if chosen is None:
            return NoTerminal("unknown", f"the user has no terminal {from_terminal!r}")
        if not usable(chosen):
            return NoTerminal("unreachable", f"terminal {from_terminal} cannot be rung now")
        return chosen
    state_name, _ = resolve_state(profile, at)
    state = profile.states.get(state_name)
    for terminal_id in state.terminal_ids if state is not None else ():
        terminal = profile.terminal(terminal_id)
        if terminal is not None and usable(terminal):
            return terminal
    return NoTerminal("unreachable", f"no terminal of the user can be rung in state {state_name}")


def callback_plan(plan: OutboundPlan) -> OutboundPlan:
    """The plan a phone would run, without the dialling PIN: the user authenticated to the
    API. A Reject plan is returned as it is (the API refuses it). An emergency number becomes
    a Reject: emergency calls are made from a phone, where the caller is and can speak, never
    by a web request that rings the user's phone first."""
    if any(isinstance(step, Reject) for step in plan.steps):
        return plan
    if any(
        isinstance(step, Connect) and step.number_class is NumberClass.EMERGENCY
        for step in plan.steps
    ):
        reason = Reason("emergency.api", "emergency numbers are dialled from a phone, not the API")
        return OutboundPlan((Reject(CAUSE_CALL_REJECTED),), (*plan.reasons, reason))
    steps = tuple(step for step in plan.steps if not isinstance(step, CollectPin))
    if len(steps) == len(plan.steps):
        return plan
    reason = Reason("pin.api", "placed through the API by the authenticated user: no PIN")
    return OutboundPlan(steps, (*plan.reasons, reason))


def refusal_detail(plan: OutboundPlan) -> str:
    """What the API says about a Reject plan: the plan's own reasons."""
    return "; ".join(reason.detail for reason in plan.reasons) or "the number cannot be dialled"
