"""The policy engine: plan_call() turns a routing profile, a caller and a moment into a
call plan (data). Pure: no I/O, no clock, no randomness, so the same inputs always give the
same plan, and a plan can be logged, explained and diffed.

A plan is an ordered list of steps. Non-final steps (Screen, Ring, Play) either connect the
call or let it fall through to the next step; the last step is always final (Voicemail,
Divert or Reject), so every plan ends somewhere audible, never in silence. Every decision
appends a Reason (a stable code plus a sentence) in the order it was taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from zoneinfo import ZoneInfo

from .model import (
    CAUSE_CALL_REJECTED,
    CAUSE_NO_ANSWER,
    MAX_REDIRECTS,
    PROMPT_CALL_REJECTED,
    PROMPT_NOT_AVAILABLE,
    AnonymousPolicy,
    AvailabilityState,
    Caller,
    CallFlowRule,
    DeviceStatus,
    Fallback,
    FallbackKind,
    InboundFilter,
    PlanContext,
    RedirectKind,
    RingMode,
    RoutingProfile,
    TimeRange,
    Weekday,
    WorkSchedule,
)


@dataclass(frozen=True)
class Reason:
    code: str  # stable, for machines and metrics: "caller.blocked", "state.schedule", ...
    detail: str  # one sentence for people


@dataclass(frozen=True)
class Screen:
    """Ask the caller before ringing: their name (played to the answering leg, who presses *
    to accept) and/or the user's call password (call introduction)."""

    ask_name: bool
    password: str | None = field(default=None, repr=False)
    delegate: str | None = None  # the answering user may send the call here instead


@dataclass(frozen=True)
class Leg:
    terminal_id: str
    location: str  # Mobile / Home / Desk / Temp / redirect
    dial_string: str
    timeout_s: int


@dataclass(frozen=True)
class Ring:
    """Ring legs together (first answer wins, the others are cancelled) or one by one, each
    for its own timeout. `whisper`: the answering leg hears the screened name first."""

    mode: RingMode
    legs: tuple[Leg, ...]
    whisper: bool = False


@dataclass(frozen=True)
class Play:
    media: tuple[str, ...]


@dataclass(frozen=True)
class Voicemail:
    mailbox: str  # user id
    greeting: str
    delegate_breakout: str | None = None  # caller may press 0 to reach this delegate


class DivertKind(str, Enum):
    DELEGATE = "delegate"
    USER = "user"
    TEAM = "team"
    EXTERNAL = "external"


@dataclass(frozen=True)
class Divert:
    """Hand the call on. USER and DELEGATE continue with that user's own plan (the executor
    calls plan_call with `divert_chain` extended by this user)."""

    kind: DivertKind
    target: str
    alert: str | None = None  # event for the messaging issue, e.g. "delegated-call"


@dataclass(frozen=True)
class Reject:
    cause: int  # Q.850


Step = Screen | Ring | Play | Voicemail | Divert | Reject
FinalStep = Voicemail | Divert | Reject
FINAL_STEP_TYPES = (Voicemail, Divert, Reject)


@dataclass(frozen=True)
class CallPlan:
    user_id: str
    state: str  # the availability state that applied ("" when the caller was filtered)
    steps: tuple[Step, ...]
    reasons: tuple[Reason, ...]

    @property
    def final(self) -> FinalStep:
        last = self.steps[-1]
        assert isinstance(last, FINAL_STEP_TYPES)
        return last

    def rung_terminals(self) -> tuple[str, ...]:
        return tuple(leg.terminal_id for s in self.steps if isinstance(s, Ring) for leg in s.legs)


# --- matching -----------------------------------------------------------------------------


def normalize_number(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit() or ch == "+")


def number_matches(number: str, entries: frozenset[str]) -> bool:
    """Exact E.164 match, or a prefix entry ending in '*'."""
    if number in entries:
        return True
    return any(e.endswith("*") and number.startswith(e[:-1]) for e in entries)


def in_time_range(time_range: TimeRange, local: datetime) -> bool:
    """`local` is wall-clock time in the range's zone. A range whose end is not after its
    start runs past midnight; it belongs to the day it starts on."""
    now = local.time()
    day = Weekday(local.weekday())
    if time_range.start < time_range.end:
        return day in time_range.days and time_range.start <= now < time_range.end
    if now >= time_range.start:
        return day in time_range.days
    if now < time_range.end:
        return Weekday((day - 1) % 7) in time_range.days
    return False


def local_time(at: datetime, timezone: str) -> datetime:
    return at.astimezone(ZoneInfo(timezone))


# --- the engine ---------------------------------------------------------------------------


class _Plan:
    def __init__(self, profile: RoutingProfile) -> None:
        self.profile = profile
        self.steps: list[Step] = []
        self.reasons: list[Reason] = []
        self.state = ""

    def why(self, code: str, detail: str) -> None:
        self.reasons.append(Reason(code, detail))

    def done(self) -> CallPlan:
        return CallPlan(self.profile.user_id, self.state, tuple(self.steps), tuple(self.reasons))


def _filter_verdict(
    flt: InboundFilter, caller: Caller, number: str, scope: str, *, vip: bool
) -> Reason | None:
    """A Reason when `flt` refuses the caller, else None."""
    if caller.anonymous:
        if flt.anonymous is AnonymousPolicy.REJECT:
            return Reason(f"caller.anonymous.{scope}", f"the {scope} refuses anonymous callers")
        return None
    if number_matches(number, flt.blocked):
        return Reason(f"caller.blocked.{scope}", f"{number} is on the {scope} block list")
    if flt.allowed_only is not None and not vip and not number_matches(number, flt.allowed_only):
        return Reason(f"caller.not_allowed.{scope}", f"{number} is not on the {scope} allow list")
    return None


def resolve_state(profile: RoutingProfile, at: datetime) -> tuple[str, Reason]:
    """Manual choice (until it expires) beats the work schedule, which beats the default."""
    manual = profile.manual
    if manual is not None and (manual.until is None or at < manual.until):
        until = "" if manual.until is None else f" until {manual.until.isoformat()}"
        return manual.state, Reason("state.manual", f"the user chose {manual.state}{until}")
    if profile.schedule is not None:
        return _scheduled_state(profile.schedule, at)
    return profile.default_state, Reason(
        "state.default", f"no choice or schedule applies: {profile.default_state}"
    )


def _scheduled_state(schedule: WorkSchedule, at: datetime) -> tuple[str, Reason]:
    local = local_time(at, schedule.timezone)
    stamp = f"{local:%a %H:%M} {schedule.timezone}"
    for entry in schedule.entries:
        if in_time_range(entry.when, local):
            rng = f"{entry.when.start:%H:%M}-{entry.when.end:%H:%M}"
            return entry.state, Reason(
                "state.schedule", f"work schedule {rng} applies at {stamp}: {entry.state}"
            )
    return schedule.otherwise, Reason(
        "state.schedule_otherwise", f"no work-schedule period at {stamp}: {schedule.otherwise}"
    )


def _call_flow_applies(rule: CallFlowRule, at: datetime) -> bool:
    return rule.period is None or in_time_range(rule.period, local_time(at, rule.timezone))


def _ring_legs(
    plan: _Plan, state: AvailabilityState, timeout_override: int | None
) -> tuple[Leg, ...]:
    legs: list[Leg] = []
    for terminal_id in state.terminal_ids:
        terminal = plan.profile.terminal(terminal_id)
        if terminal is None:
            plan.why("terminal.missing", f"terminal {terminal_id} no longer exists: skipped")
            continue
        if terminal.status is not DeviceStatus.ACTIVE:
            plan.why(
                f"terminal.{terminal.status.value}",
                f"{terminal.kind.value} terminal {terminal_id} is {terminal.status.value}: "
                "never rung",
            )
            continue
        timeout = terminal.ring_timeout_s if timeout_override is None else timeout_override
        legs.append(Leg(terminal_id, terminal.kind.value, terminal.dial_string, timeout))
    return tuple(legs)


def _usable_delegate(plan: _Plan, context: PlanContext, preferred: str = "") -> str | None:
    candidates = (preferred,) if preferred else plan.profile.delegates
    for delegate in candidates:
        if _divert_refusal(plan, context, delegate) is None:
            return delegate
    return None


def _divert_refusal(plan: _Plan, context: PlanContext, target_user: str) -> Reason | None:
    """Why a divert to another user must not happen (a loop, or too many hops)."""
    if target_user == plan.profile.user_id or target_user in context.divert_chain:
        return Reason("divert.loop", f"divert to {target_user} would loop back: refused")
    if len(context.divert_chain) >= MAX_REDIRECTS:
        return Reason(
            "divert.limit", f"{MAX_REDIRECTS} redirects already: no divert to {target_user}"
        )
    return None


def _voicemail(plan: _Plan, context: PlanContext, greeting: str) -> None:
    plan.steps.append(Voicemail(plan.profile.user_id, greeting, _usable_delegate(plan, context)))


def _finish(plan: _Plan, context: PlanContext, fallback: Fallback, state_name: str) -> None:
    """Append the final step for `fallback`; a divert that cannot happen lands in voicemail."""
    default_greeting = fallback.greeting or state_name.lower()
    kind = fallback.kind
    if kind is FallbackKind.VOICEMAIL:
        plan.why("fallback.voicemail", f"voicemail with the '{default_greeting}' greeting")
        _voicemail(plan, context, default_greeting)
    elif kind is FallbackKind.DELEGATE:
        if fallback.target:
            refusal = _divert_refusal(plan, context, fallback.target)
            delegate = None if refusal else fallback.target
        else:
            delegate = _usable_delegate(plan, context)
            refusal = None if delegate else Reason("delegate.none", "no usable delegate")
        if delegate is None:
            assert refusal is not None
            plan.reasons.append(refusal)
            plan.why("fallback.voicemail", f"voicemail with the '{default_greeting}' greeting")
            plan.steps.append(Voicemail(plan.profile.user_id, default_greeting))
        else:
            plan.why("fallback.delegate", f"divert to delegate {delegate}")
            plan.steps.append(Divert(DivertKind.DELEGATE, delegate, alert="delegated-call"))
    elif kind is FallbackKind.TEAM:
        plan.why("fallback.team", f"divert to team {fallback.target}")
        plan.steps.append(Divert(DivertKind.TEAM, fallback.target))
    elif kind is FallbackKind.EXTERNAL:
        plan.why("fallback.external", f"forward to {fallback.target}")
        plan.steps.append(Divert(DivertKind.EXTERNAL, fallback.target))
    else:
        plan.why("fallback.no_messages", "no messages can be left: greeting, then release")
        media = (f"greeting:{fallback.greeting}",) if fallback.greeting else (PROMPT_NOT_AVAILABLE,)
        plan.steps.append(Play(media))
        plan.steps.append(Reject(CAUSE_NO_ANSWER))


def _redirects(plan: _Plan, context: PlanContext, rule: CallFlowRule) -> bool:
    """Append the call-flow redirects; True when one of them ended the plan."""
    for n, redirect in enumerate(rule.redirects[:MAX_REDIRECTS], start=1):
        if redirect.kind is RedirectKind.EXTERNAL:
            plan.why("redirect.external", f"redirect {n}: ring {redirect.target}")
            leg = Leg(f"redirect-{n}", "redirect", redirect.target, redirect.ring_timeout_s)
            plan.steps.append(Ring(RingMode.SEQUENTIAL, (leg,)))
        elif redirect.kind is RedirectKind.VOICEMAIL:
            plan.why("redirect.voicemail", f"redirect {n}: voicemail")
            _voicemail(plan, context, plan.state.lower())
            return True
        elif redirect.kind is RedirectKind.TEAM:
            plan.why("redirect.team", f"redirect {n}: team {redirect.target}")
            plan.steps.append(Divert(DivertKind.TEAM, redirect.target))
            return True
        else:
            refusal = _divert_refusal(plan, context, redirect.target)
            if refusal is not None:
                plan.reasons.append(refusal)
                continue
            plan.why("redirect.user", f"redirect {n}: user {redirect.target}")
            plan.steps.append(Divert(DivertKind.USER, redirect.target))
            return True
    return False


def plan_call(
    profile: RoutingProfile, caller: Caller, at: datetime, context: PlanContext
) -> CallPlan:
    """Where a call from `caller` to `profile`'s user goes at the moment `at`, and why."""
    if at.tzinfo is None:
        raise ValueError("plan_call needs an aware datetime (UTC or with a zone)")
    plan = _Plan(profile)
    number = normalize_number(caller.number or "")
    vip = not caller.anonymous and number_matches(number, profile.vip_numbers)

    # Filters first: the tenant's, then the user's (a VIP passes an allow list, not a block).
    for flt, scope in ((context.tenant.inbound_filter, "tenant"), (profile.inbound_filter, "user")):
        refusal = _filter_verdict(flt, caller, number, scope, vip=vip)
        if refusal is not None:
            plan.reasons.append(refusal)
            plan.steps += [Play((PROMPT_CALL_REJECTED,)), Reject(CAUSE_CALL_REJECTED)]
            return plan.done()

    if profile.user_id in context.divert_chain:
        # The executor should never get here (diverts refuse loops), but if it does the call
        # must still end somewhere: this user's voicemail, without ringing anyone again.
        plan.why("divert.loop", f"{profile.user_id} was already tried in this call")
        _voicemail(plan, context, "unavailable")
        return plan.done()

    state_name, state_reason = resolve_state(profile, at)
    plan.reasons.append(state_reason)
    state = profile.states.get(state_name)
    if state is None:
        plan.why("state.unknown", f"state {state_name} is not defined: voicemail")
        plan.state = state_name
        _voicemail(plan, context, "unavailable")
        return plan.done()
    plan.state = state_name

    if profile.logged_out:
        plan.why("location.none", "location is None (logged out): every call to voicemail")
        _voicemail(plan, context, state.fallback.greeting or state_name.lower())
        return plan.done()

    if context.delegate_on_demand:
        plan.why("delegate.on_demand", "the delegate was asked for")
        _finish(plan, context, Fallback(FallbackKind.DELEGATE), state_name)
        return plan.done()

    ring_state = state
    if vip:
        plan.why("caller.vip", f"{number} is a VIP contact")
        if not state.terminal_ids:
            vip_state = profile.states.get(profile.vip_state)
            if vip_state is not None:
                plan.why("vip.bypass", f"VIP bypasses {state_name}: rings {vip_state.name}")
                ring_state = vip_state

    rule = profile.call_flow
    rule_applies = rule is not None and _call_flow_applies(rule, at)
    if rule is not None:
        plan.why(
            "callflow.applies" if rule_applies else "callflow.outside_period",
            "call-flow rule applies" if rule_applies else "call-flow rule period not in force",
        )
    legs = _ring_legs(plan, ring_state, rule.call_timeout_s if rule and rule_applies else None)

    if legs:
        screening = profile.screening
        screen = screening.enabled and not (
            (vip and screening.skip_for_vip)
            or (caller.internal_user_id is not None and screening.skip_for_internal)
        )
        if screen:
            plan.why("screen", "screening: the caller is asked first, the user accepts with *")
            plan.steps.append(
                Screen(screening.ask_name, screening.password, _usable_delegate(plan, context))
            )
        elif screening.enabled:
            plan.why("screen.skipped", "screening skipped for a VIP or internal caller")
        mode = ring_state.ring_mode if len(legs) > 1 else RingMode.SEQUENTIAL
        plan.why("ring", f"ring {len(legs)} terminal(s) {mode.value}ly in {ring_state.name}")
        plan.steps.append(Ring(mode, legs, whisper=screen and screening.ask_name))
    else:
        plan.why("ring.none", f"{ring_state.name} rings no terminal")

    if rule is not None and rule_applies and _redirects(plan, context, rule):
        return plan.done()
    _finish(plan, context, state.fallback, state_name)
    return plan.done()
