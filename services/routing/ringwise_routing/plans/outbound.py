"""Outbound policy (pure): which caller ID a user's call presents, and whether the number may
be dialled (international / premium allowed, blocked or PIN-protected; emergency always),
with the credit check billing must pass before a chargeable call connects (seeds 000, 003, 004).

plan_outbound() returns the steps in order: CollectPin (if the class needs one), then
AuthoriseCredit (chargeable calls), then Connect; or a single Reject. The executor runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .engine import Reason, Reject, normalize_number, number_matches

CAUSE_OUTGOING_BARRED = 21  # call rejected: the caller may not dial this
CAUSE_INVALID_NUMBER = 28  # invalid number format


class NumberClass(str, Enum):
    EMERGENCY = "emergency"
    EXTENSION = "extension"  # a short internal number, resolved by the directory
    NATIONAL = "national"
    INTERNATIONAL = "international"
    PREMIUM = "premium"


class DialPermission(str, Enum):
    ALLOWED = "allowed"
    BLOCKED = "blocked"
    PIN = "pin"  # allowed after the user's dialling PIN


class CliChoice(str, Enum):
    SMARTNUMBER = "smartnumber"
    DESIGNATED = "designated"  # the number the admin designated for the user
    CHOSEN = "chosen"  # one the user picked from the admin-allowed set
    WITHHELD = "withheld"


@dataclass(frozen=True)
class OutboundProfile:
    user_id: str
    smartnumber: str
    cli_choice: CliChoice = CliChoice.SMARTNUMBER
    designated_number: str | None = None
    chosen_number: str | None = None
    international: DialPermission = DialPermission.ALLOWED
    premium: DialPermission = DialPermission.BLOCKED
    dialling_pin: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TenantDialling:
    country_code: str = "+44"  # numbers dialled nationally ("020...") belong here
    emergency_numbers: frozenset[str] = frozenset({"999", "112", "911"})
    premium_prefixes: frozenset[str] = frozenset({"+449*", "+4487*", "+1900*"})
    allowed_clis: frozenset[str] = frozenset()  # what users may choose to present
    credit_fail_open: bool = False  # billing unreachable: connect (True) or refuse (False)
    max_extension_digits: int = 6


@dataclass(frozen=True)
class CollectPin:
    pin: str = field(repr=False)
    attempts: int = 3


@dataclass(frozen=True)
class AuthoriseCredit:
    """Ask billing before connecting; `fail_open` says what to do if billing does not answer.
    A refusal plays `refused_prompt` and releases the call."""

    fail_open: bool
    refused_prompt: str = "sound:cannot-complete-as-dialed"


@dataclass(frozen=True)
class Connect:
    destination: str  # E.164, an extension, or the emergency short code
    number_class: NumberClass
    presented_cli: str  # what the far end sees (the real number even when withheld)
    withheld: bool  # presentation restricted (privacy: id)


OutboundStep = CollectPin | AuthoriseCredit | Connect | Reject


@dataclass(frozen=True)
class OutboundPlan:
    steps: tuple[OutboundStep, ...]
    reasons: tuple[Reason, ...]


def classify(dialled: str, tenant: TenantDialling) -> tuple[NumberClass, str] | None:
    """The class and canonical form of a dialled number, or None when it is not a number."""
    number = normalize_number(dialled)
    if not number or number.count("+") > 1 or "+" in number[1:]:
        return None
    if number in tenant.emergency_numbers:
        return NumberClass.EMERGENCY, number
    if number.startswith("00"):
        number = "+" + number[2:]
    elif number.startswith("0"):
        number = tenant.country_code + number[1:]
    elif not number.startswith("+"):
        if len(number) <= tenant.max_extension_digits:
            return NumberClass.EXTENSION, number
        return None
    if len(number) < 8:
        return None
    if number_matches(number, tenant.premium_prefixes):
        return NumberClass.PREMIUM, number
    if not number.startswith(tenant.country_code):
        return NumberClass.INTERNATIONAL, number
    return NumberClass.NATIONAL, number


def presented_cli(
    profile: OutboundProfile, tenant: TenantDialling, reasons: list[Reason]
) -> tuple[str, bool]:
    """The number to present and whether presentation is restricted."""
    choice = profile.cli_choice
    if choice is CliChoice.DESIGNATED and profile.designated_number:
        reasons.append(Reason("cli.designated", f"presents {profile.designated_number}"))
        return profile.designated_number, False
    if choice is CliChoice.CHOSEN and profile.chosen_number:
        if profile.chosen_number in tenant.allowed_clis:
            reasons.append(Reason("cli.chosen", f"presents {profile.chosen_number}"))
            return profile.chosen_number, False
        reasons.append(
            Reason("cli.not_allowed", f"{profile.chosen_number} is not allowed: smartnumber")
        )
    if choice is CliChoice.WITHHELD:
        reasons.append(Reason("cli.withheld", "number withheld from the called party"))
        return profile.smartnumber, True
    reasons.append(Reason("cli.smartnumber", f"presents the smartnumber {profile.smartnumber}"))
    return profile.smartnumber, False


def plan_outbound(profile: OutboundProfile, tenant: TenantDialling, dialled: str) -> OutboundPlan:
    reasons: list[Reason] = []
    classified = classify(dialled, tenant)
    if classified is None:
        reasons.append(Reason("dial.invalid", f"{dialled!r} is not a dialable number"))
        return OutboundPlan((Reject(CAUSE_INVALID_NUMBER),), tuple(reasons))
    number_class, destination = classified
    cli, withheld = presented_cli(profile, tenant, reasons)

    if number_class is NumberClass.EMERGENCY:
        # Emergency calls are never barred, never wait for billing, and always show the
        # caller's number so the emergency service can call back.
        reasons.append(Reason("dial.emergency", f"{destination} is an emergency number"))
        return OutboundPlan(
            (Connect(destination, number_class, cli, withheld=False),), tuple(reasons)
        )
    if number_class is NumberClass.EXTENSION:
        reasons.append(Reason("dial.extension", f"internal extension {destination}"))
        return OutboundPlan((Connect(destination, number_class, cli, withheld),), tuple(reasons))

    steps: list[OutboundStep] = []
    permission = {
        NumberClass.INTERNATIONAL: profile.international,
        NumberClass.PREMIUM: profile.premium,
    }.get(number_class, DialPermission.ALLOWED)
    label = number_class.value
    if permission is DialPermission.BLOCKED:
        reasons.append(Reason(f"dial.{label}.blocked", f"{label} calls are barred for the user"))
        return OutboundPlan((Reject(CAUSE_OUTGOING_BARRED),), tuple(reasons))
    if permission is DialPermission.PIN:
        if not profile.dialling_pin:
            reasons.append(Reason(f"dial.{label}.no_pin", f"{label} needs a PIN; none is set"))
            return OutboundPlan((Reject(CAUSE_OUTGOING_BARRED),), tuple(reasons))
        reasons.append(Reason(f"dial.{label}.pin", f"{label} calls need the dialling PIN"))
        steps.append(CollectPin(profile.dialling_pin))
    else:
        reasons.append(Reason(f"dial.{label}", f"{label} call to {destination}"))
    policy = "fail-open" if tenant.credit_fail_open else "fail-closed"
    reasons.append(Reason("credit.ask", f"billing authorises the call first ({policy})"))
    steps.append(AuthoriseCredit(tenant.credit_fail_open))
    steps.append(Connect(destination, number_class, cli, withheld))
    return OutboundPlan(tuple(steps), tuple(reasons))
