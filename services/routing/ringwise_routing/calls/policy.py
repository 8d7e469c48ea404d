"""Routing policy for inbound calls: pure functions, no I/O (fully unit-tested).

decide() turns what the directory said about the dialled number into a decision (data);
the ARI executor (session.py) carries it out. treatment_for() says what the caller gets when
nobody answered. Every decision records its reasons, in order, for CallRouted and for
"why did my call go there?" questions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from ringwise.directory.v1 import resolve_pb2
from ringwise.events.v1 import call_pb2

from ringwise_routing.plans.engine import CallPlan, Play, Reject, Ring
from ringwise_routing.plans.explain import plan_summary

# Q.850 causes we use (SIP mapping per RFC 3398 as Asterisk applies it).
CAUSE_UNALLOCATED = 1  # -> 404 Not Found
CAUSE_NORMAL_CLEARING = 16
CAUSE_USER_BUSY = 17  # -> 486 Busy Here
CAUSE_NO_USER_RESPONSE = 18
CAUSE_NO_ANSWER = 19  # -> 480 Temporarily Unavailable
CAUSE_SUBSCRIBER_ABSENT = 20  # -> 480
CAUSE_CONGESTION = 34  # -> 503
CAUSE_TEMPORARY_FAILURE = 41  # Asterisk's PJSIP sends this as 603 Decline (not retryable)
# What the caller's network gets when the platform fails: 503, so it may retry elsewhere.
CAUSE_PLATFORM_FAILURE = CAUSE_CONGESTION

# Asterisk core sounds (asterisk-core-sounds-en); tests check every one is installed.
# Prompts play as early media (183): the caller's network does not charge an unanswered call.
PROMPT_NOT_IN_SERVICE = ("sound:ss-noservice",)  # "The number you have dialed is not in service"
PROMPT_NOT_ANSWERING = ("sound:number-not-answering",)  # "The number is not answering"
PROMPT_UNREACHABLE = ("sound:followme/sorry",)  # "...unable to locate the person you are calling"
PROMPT_PLATFORM_FAILURE = ("sound:all-circuits-busy-now",)  # "All circuits are busy now"
ALL_PROMPTS = (
    PROMPT_NOT_IN_SERVICE,
    PROMPT_NOT_ANSWERING,
    PROMPT_UNREACHABLE,
    PROMPT_PLATFORM_FAILURE,
)

DEFAULT_RING_TIMEOUT_S = 20
MIN_RING_TIMEOUT_S = 5
MAX_RING_TIMEOUT_S = 120

Disposition = call_pb2.Disposition


class Action(Enum):
    RING = "ring"
    REJECT = "reject"


@dataclass(frozen=True)
class Target:
    device_id: str
    dial_string: str
    ring_timeout_s: int


@dataclass(frozen=True)
class Decision:
    action: Action
    reasons: tuple[str, ...]
    tenant_id: str = ""
    user_id: str = ""
    targets: tuple[Target, ...] = ()
    # For REJECT: what the caller hears, the cause, and how the CDR records it.
    prompt: tuple[str, ...] = ()
    hangup_cause: int = 0
    disposition: Disposition.ValueType = Disposition.DISPOSITION_UNSPECIFIED


@dataclass(frozen=True)
class LookupFailed:
    """The directory could not be asked (timeout, no responder): not the caller's fault."""

    reason: str


Lookup = resolve_pb2.ResolveNumberReply | LookupFailed

_DIGITS = re.compile(r"^\+?[0-9]{2,20}$")


def normalize_number(dialled: str) -> str:
    """E.164-ish form of what the trunk sent: '0044...' and '44...' become '+44...'."""
    number = re.sub(r"[\s().-]", "", dialled)
    if number.startswith("00"):
        number = "+" + number[2:]
    if number and not number.startswith("+") and number.isdigit():
        number = "+" + number
    return number


def is_dialable(number: str) -> bool:
    return bool(_DIGITS.match(number))


def clamp_timeout(seconds: int) -> int:
    if seconds <= 0:
        return DEFAULT_RING_TIMEOUT_S
    return max(MIN_RING_TIMEOUT_S, min(MAX_RING_TIMEOUT_S, seconds))


def decide(number: str, lookup: Lookup) -> Decision:
    if isinstance(lookup, LookupFailed):
        return Decision(
            Action.REJECT,
            reasons=(f"directory unavailable ({lookup.reason})", "caller hears a retry-later"),
            prompt=PROMPT_PLATFORM_FAILURE,
            hangup_cause=CAUSE_PLATFORM_FAILURE,
            disposition=Disposition.DISPOSITION_FAILED,
        )
    if lookup.status != resolve_pb2.ResolveNumberReply.STATUS_FOUND:
        return Decision(
            Action.REJECT,
            reasons=(f"number {number} is not assigned",),
            prompt=PROMPT_NOT_IN_SERVICE,
            hangup_cause=CAUSE_UNALLOCATED,
            disposition=Disposition.DISPOSITION_NOT_IN_SERVICE,
        )
    reasons = [f"number {number} belongs to user {lookup.user_id} of tenant {lookup.tenant_id}"]
    timeout = clamp_timeout(lookup.ring_timeout_s)
    targets = tuple(
        Target(device.device_id, device.dial_string, timeout)
        for device in lookup.devices
        if device.dial_string
    )
    if not targets:
        reasons.append("the user has no reachable device")
        return Decision(
            Action.REJECT,
            reasons=tuple(reasons),
            tenant_id=lookup.tenant_id,
            user_id=lookup.user_id,
            prompt=PROMPT_UNREACHABLE,
            hangup_cause=CAUSE_SUBSCRIBER_ABSENT,
            disposition=Disposition.DISPOSITION_UNREACHABLE,
        )
    # The spine rings the user's first device; availability, locations and simultaneous
    # ring are the routing-policy issue's.
    first = targets[0]
    reasons.append(f"ring {first.device_id} for {first.ring_timeout_s}s")
    return Decision(
        Action.RING,
        reasons=tuple(reasons),
        tenant_id=lookup.tenant_id,
        user_id=lookup.user_id,
        targets=(first,),
    )


@dataclass(frozen=True)
class Treatment:
    """What the caller gets when the ringing ended without an answer."""

    disposition: Disposition.ValueType
    hangup_cause: int
    prompt: tuple[str, ...] = field(default=())


def treatment_for(dialstatus: str) -> Treatment:
    """Map Asterisk's dial status to the caller's experience and the CDR disposition."""
    status = dialstatus.upper()
    if status == "BUSY":
        # Busy goes back to the caller's network as 486; their network plays the busy tone.
        return Treatment(Disposition.DISPOSITION_BUSY, CAUSE_USER_BUSY)
    if status == "NOANSWER":
        return Treatment(Disposition.DISPOSITION_NO_ANSWER, CAUSE_NO_ANSWER, PROMPT_NOT_ANSWERING)
    if status == "CONGESTION":
        return Treatment(Disposition.DISPOSITION_UNREACHABLE, CAUSE_CONGESTION, PROMPT_UNREACHABLE)
    # CHANUNAVAIL, and anything unexpected: the device could not be reached.
    return Treatment(
        Disposition.DISPOSITION_UNREACHABLE, CAUSE_SUBSCRIBER_ABSENT, PROMPT_UNREACHABLE
    )


def dialstatus_for(cause: int, rang: bool) -> str:
    """The dial status a Q.850 hang-up cause of the called leg amounts to.

    Asterisk sends no final Dial event for failed ARI dials, only the leg's cause. A device
    that never rang did not answer because it was not reachable (e.g. SIP timer B).
    """
    if cause == CAUSE_USER_BUSY:
        return "BUSY"
    if cause in (CAUSE_NO_USER_RESPONSE, CAUSE_NO_ANSWER):
        return "NOANSWER" if rang else "CHANUNAVAIL"
    if cause in (CAUSE_CONGESTION, CAUSE_TEMPORARY_FAILURE, 42, 44):
        return "CONGESTION"
    return "CHANUNAVAIL"


def to_proto(decision: Decision) -> call_pb2.RoutingDecision:
    action = (
        call_pb2.RoutingDecision.ACTION_RING
        if decision.action is Action.RING
        else call_pb2.RoutingDecision.ACTION_REJECT
    )
    return call_pb2.RoutingDecision(
        action=action,
        targets=[
            call_pb2.RouteTarget(
                device_id=t.device_id, dial_string=t.dial_string, ring_timeout_s=t.ring_timeout_s
            )
            for t in decision.targets
        ],
        reasons=list(decision.reasons),
        hangup_cause=decision.hangup_cause,
        prompt=",".join(decision.prompt),
    )


# -- executing a CallPlan (session.py): the pure pieces ------------------------------------

# Screening (seeds 000/001): what the caller and the answering leg hear (core sounds).
PROMPT_SAY_NAME = ("sound:priv-recordintro", "sound:beep")  # "...say your name after the tone"
PROMPT_ENTER_PASSWORD = ("sound:agent-pass",)  # "Please enter your password followed by #"
PROMPT_WRONG_PASSWORD = ("sound:auth-incorrect",)  # "Password incorrect"
PROMPT_PLEASE_HOLD = ("sound:pls-hold-while-try",)  # "Please hold while I try that extension"
# The answering leg: "Incoming call from" <name> "press" "star".
PROMPT_WHISPER_FROM = ("sound:followme/call-from",)
PROMPT_WHISPER_ACCEPT = ("sound:vm-press", "sound:digits/star")
# Internal ringback for a caller whose channel is already answered (screening, voicemail 0).
RINGBACK_TONE = "tone:ring"
SCREEN_ACCEPT_DIGIT = "*"
SCREEN_NAME_SECONDS = 3
SCREEN_PASSWORD_TRIES = 3
SCREEN_WHISPER_WAIT_S = 10.0
VOICEMAIL_BREAKOUT_DIGIT = "0"
PLAN_PROMPTS = (
    PROMPT_SAY_NAME,
    PROMPT_ENTER_PASSWORD,
    PROMPT_WRONG_PASSWORD,
    PROMPT_PLEASE_HOLD,
    PROMPT_WHISPER_FROM,
    PROMPT_WHISPER_ACCEPT,
)


def combined_dialstatus(statuses: list[str]) -> str:
    """One status for a ring step whose legs all ended unanswered: a leg that rang out means
    the user did not answer; all legs busy means busy; else the devices were unreachable."""
    upper = [s.upper() for s in statuses]
    if not upper:
        return "CHANUNAVAIL"
    if "NOANSWER" in upper:
        return "NOANSWER"
    if all(s == "BUSY" for s in upper):
        return "BUSY"
    if "BUSY" in upper:
        return "BUSY"
    if "CONGESTION" in upper:
        return "CONGESTION"
    return "CHANUNAVAIL"


def disposition_for_cause(cause: int) -> Disposition.ValueType:
    """The CDR disposition of a plan that ends in Reject(cause)."""
    if cause == CAUSE_USER_BUSY:
        return Disposition.DISPOSITION_BUSY
    if cause == CAUSE_NO_ANSWER:
        return Disposition.DISPOSITION_NO_ANSWER
    if cause == CAUSE_UNALLOCATED:
        return Disposition.DISPOSITION_NOT_IN_SERVICE
    # A refused caller (21) or anything else: the user could not be reached by this caller.
    return Disposition.DISPOSITION_UNREACHABLE


def plan_decision(
    number: str,
    lookup: resolve_pb2.ResolveNumberReply,
    plan: CallPlan,
    *,
    leading: tuple[tuple[str, str], ...] = (),
) -> call_pb2.RoutingDecision:
    """CallRouted's decision for a plan: RING when anybody is rung or the call is taken
    (voicemail, divert), REJECT when it ends in a reject without ringing; every ring leg as a
    target; the number's owner first, then the plan's reasons (codes in the same order)."""
    reasons: list[tuple[str, str]] = [
        (
            "number.found",
            f"number {number} belongs to user {lookup.user_id} of tenant {lookup.tenant_id}",
        ),
        *leading,
        *((r.code, r.detail) for r in plan.reasons),
    ]
    legs = [leg for step in plan.steps if isinstance(step, Ring) for leg in step.legs]
    final = plan.final
    rejected = isinstance(final, Reject) and not legs
    return call_pb2.RoutingDecision(
        action=call_pb2.RoutingDecision.ACTION_REJECT
        if rejected
        else call_pb2.RoutingDecision.ACTION_RING,
        targets=[
            call_pb2.RouteTarget(
                device_id=leg.terminal_id, dial_string=leg.dial_string, ring_timeout_s=leg.timeout_s
            )
            for leg in legs
        ],
        reasons=[detail for _, detail in reasons],
        reason_codes=[code for code, _ in reasons],
        hangup_cause=final.cause if isinstance(final, Reject) else 0,
        prompt=",".join(
            media for step in plan.steps if isinstance(step, Play) for media in step.media
        )
        if rejected
        else "",
        state=plan.state,
        steps=plan_summary(plan),
    )


def playable(media: str) -> str:
    """ARI media for a Play step's item: `greeting:<name>` (a user's recorded greeting) has no
    ARI form here, so the caller hears the generic "nobody is available" instead."""
    if media.startswith("greeting:"):
        return "sound:vm-nobodyavail"
    return media
