"""The stored JSON documents of routing (pure apart from argon2 hashing): a user's routing
profile and the tenant's routing policy, checked field by field, and turned into the policy
inputs of plans/ (RoutingProfile + OutboundProfile, TenantPolicy + TenantDialling).

Profile document (the API body; the store keeps the same shape):

    terminals:  [{id, location: Mobile|Home|Desk|Temp, device_id | number, ring_timeout_s}]
                at most 5. `device_id` names a directory device: its dial string comes from
                the directory's resolve reply at call time, and a device no longer in the reply
                becomes DeviceStatus.DELETED (never rung). `number` is an external E.164
                number dialled through the PSTN trunk (settings.trunk_dial); with no trunk it
                is BLOCKED (never rung).
    states:     {name: {terminals: [ids], ring_mode, fallback: {kind, greeting, target}}}
    default_state, vip_state, manual {state, until}, schedule {timezone, entries[{days,
    start, end, state}], otherwise}, logged_out, call_flow {period {days, start, end} | null,
    timezone, call_timeout_s, redirects[{kind, target, ring_timeout_s}]}, vip_numbers,
    inbound_filter {blocked, allowed_only, anonymous}, delegates, screening {enabled,
    ask_name, password, skip_for_vip, skip_for_internal},
    outbound {cli_choice, chosen_number, international, premium, dialling_pin}.

The user's smartnumber, designated number (outbound_numbers[0]) and allowed CLIs come from
the directory reply, not from the profile.

Secrets (the screening call password, the dialling PIN) are write-only: a body sets them
(string), clears them (null) or keeps them (absent); replies show `password_set` /
`dialling_pin_set`. They are stored as argon2id hashes and never logged. The model fields
(`Screening.password`, `OutboundProfile.dialling_pin`, hence `Screen.password` and
`CollectPin.pin` in plans) then hold the HASH: executors check what the caller keyed with
`verify_secret(stored_hash, entered)` (or `await verify_secret_off_loop(...)`, which keeps the
~40 ms of argon2 off the event loop), never by comparing strings.

Tenant policy document: {custom_states: [names], inbound_filter {...}, dialling:
{country_code, emergency_numbers, premium_prefixes, credit_fail_open, max_extension_digits}}.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, time
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ringwise_routing.plans.model import (
    BUILTIN_STATE_NAMES,
    DEFAULT_LEG_TIMEOUT_S,
    MAX_REDIRECTS,
    MAX_TERMINALS,
    AnonymousPolicy,
    AvailabilityState,
    BuiltinState,
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
    Weekday,
    WorkSchedule,
)
from ringwise_routing.plans.outbound import (
    CliChoice,
    DialPermission,
    OutboundProfile,
    TenantDialling,
)
from ringwise_routing.plans.validation import FieldError, validate_profile
from ringwise_routing.profiles.source import (
    UserReply,
    UserRouting,
    default_routing,
    device_dial_string,
)

Doc = dict[str, Any]
TrunkDial = Callable[[str], str]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STATE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9 _-]{0,31}$")
GREETING = re.compile(r"^[a-z0-9_-]{0,32}$")
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
SHORT_CODE = re.compile(r"^\d{2,6}$")
PREFIX = re.compile(r"^\+\d{1,15}\*?$")
COUNTRY_CODE = re.compile(r"^\+[1-9]\d{0,2}$")
MAX_LIST = 200  # VIPs, filter entries
MAX_DELEGATES = 10
MAX_CUSTOM_STATES = 20
MAX_SCHEDULE_ENTRIES = 50
MIN_SECRET_DIGITS = 4
MAX_SECRET_DIGITS = 12
MIN_YEAR, MAX_YEAR = 1970, 9998
# Placeholder dial string of a terminal that cannot be rung (status DELETED / BLOCKED): never
# dialled, but keeps a stored profile valid (validate_profile wants a dial string).
UNREACHABLE = "unreachable:"

# Moderate cost, as voicemail's PINs: a secret is checked once per call attempt.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class DocumentInvalid(ValueError):
    """The document breaks a rule; `errors` say which fields (the API's 422 body)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


# -- secrets -------------------------------------------------------------------------------


def check_secret(value: Any, path: str) -> list[FieldError]:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return [FieldError(path, "digits only")]
    if not MIN_SECRET_DIGITS <= len(value) <= MAX_SECRET_DIGITS:
        return [FieldError(path, f"{MIN_SECRET_DIGITS} to {MAX_SECRET_DIGITS} digits")]
    return []


def hash_secret(plain: str) -> str:
    return _hasher.hash(plain)


def verify_secret(stored_hash: str | None, entered: str) -> bool:
    """Whether what the caller keyed matches a stored secret (a screening call password or a
    dialling PIN, as the plan steps carry them). False when no secret is stored."""
    if not stored_hash or not entered:
        return False
    try:
        return _hasher.verify(stored_hash, entered)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_secret_off_loop(stored_hash: str | None, entered: str) -> bool:
    """verify_secret() in a worker thread: argon2 takes ~40 ms, which would stall every other
    call this routing instance carries if run on the event loop."""
    return await asyncio.to_thread(verify_secret, stored_hash, entered)


# -- field checks --------------------------------------------------------------------------


class _Checker:
    """Collects field errors while reading an untrusted JSON value."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def obj(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.error(path or "body", "must be an object")
            return {}
        for key in value:
            if key not in allowed:
                self.error(f"{path}.{key}" if path else str(key), "unknown field")
        return value

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(path, "must be true or false")
            return default
        return value

    def integer(self, value: Any, path: str, default: int, low: int, high: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.error(path, f"a whole number {low}..{high}")
            return default
        return int(value)

    def choice(self, value: Any, path: str, options: tuple[str, ...], default: str) -> str:
        if value is None:
            return default
        if not isinstance(value, str) or value not in options:
            self.error(path, "one of " + ", ".join(options))
            return default
        return value

    def text(self, value: Any, path: str, pattern: re.Pattern[str], what: str) -> str | None:
        if not isinstance(value, str) or not pattern.match(value):
            self.error(path, f"not {what}")
            return None
        return value

    def strings(
        self, value: Any, path: str, pattern: re.Pattern[str], what: str, max_items: int
    ) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > max_items:
            self.error(path, f"a list of at most {max_items} entries")
            return []
        out: list[str] = []
        for i, item in enumerate(value):
            checked = self.text(item, f"{path}[{i}]", pattern, what)
            if checked is not None and checked not in out:
                out.append(checked)
        return out

    def days(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list) or not value or len(value) > 7:
            self.error(path, "a list of 1 to 7 days (mon..sun)")
            return []
        if not all(isinstance(d, str) and d in DAYS for d in value):
            self.error(path, "days are mon, tue, wed, thu, fri, sat, sun")
            return []
        return sorted(set(value), key=DAYS.index)

    def time_range(self, value: Any, path: str, extra: tuple[str, ...] = ()) -> Doc | None:
        body = self.obj(value, path, ("days", "start", "end", *extra))
        if not body:
            return None
        days = self.days(body.get("days"), f"{path}.days")
        start = self.text(body.get("start"), f"{path}.start", HHMM, "an HH:MM time")
        end = self.text(body.get("end"), f"{path}.end", HHMM, "an HH:MM time")
        if not days or start is None or end is None:
            return None
        return {"days": days, "start": start, "end": end}

    def number(self, value: Any, path: str) -> str | None:
        return self.text(value, path, E164, "an E.164 number (+ and 7 to 15 digits)")

    def inbound_filter(self, value: Any, path: str) -> Doc:
        body = self.obj(value or {}, path, ("blocked", "allowed_only", "anonymous"))
        entries = "an E.164 number or a +prefix*"
        allowed_only = body.get("allowed_only")
        return {
            "blocked": self.strings(
                body.get("blocked"), f"{path}.blocked", PREFIX, entries, MAX_LIST
            ),
            "allowed_only": None
            if allowed_only is None
            else self.strings(allowed_only, f"{path}.allowed_only", PREFIX, entries, MAX_LIST),
            "anonymous": self.choice(
                body.get("anonymous"),
                f"{path}.anonymous",
                tuple(a.value for a in AnonymousPolicy),
                AnonymousPolicy.ALLOW.value,
            ),
        }


def _secret_field(
    checker: _Checker, body: Mapping[str, Any], key: str, path: str, previous_hash: str | None
) -> str | None:
    """A write-only secret: absent keeps the stored hash, null clears it, a string sets it."""
    if key not in body:
        return previous_hash
    value = body[key]
    if value is None:
        return None
    errors = check_secret(value, path)
    if errors:
        checker.errors += errors
        return previous_hash
    return hash_secret(str(value))


# -- the profile document ------------------------------------------------------------------

PROFILE_FIELDS = (
    "terminals",
    "states",
    "default_state",
    "vip_state",
    "manual",
    "schedule",
    "logged_out",
    "call_flow",
    "vip_numbers",
    "inbound_filter",
    "delegates",
    "screening",
    "outbound",
)
# Fields of a GET reply a client may send back unchanged (read-modify-write); ignored.
READ_ONLY_FIELDS = ("tenant_id", "user_id", "version", "stored")
LOCATIONS = tuple(k.value for k in LocationKind)
RING_MODES = tuple(m.value for m in RingMode)
FALLBACKS = tuple(f.value for f in FallbackKind)
REDIRECTS = tuple(r.value for r in RedirectKind)
CLI_CHOICES = tuple(c.value for c in CliChoice)
PERMISSIONS = tuple(p.value for p in DialPermission)


def _terminals(checker: _Checker, value: Any) -> list[Doc]:
    if not isinstance(value, list):
        checker.error("terminals", "a list of terminals")
        return []
    if len(value) > MAX_TERMINALS:
        checker.error("terminals", f"at most {MAX_TERMINALS} terminals, not {len(value)}")
        return []
    out: list[Doc] = []
    for i, item in enumerate(value):
        path = f"terminals[{i}]"
        body = checker.obj(
            item, path, ("id", "location", "device_id", "number", "ring_timeout_s", "status")
        )
        if not body:
            continue
        terminal_id = checker.text(body.get("id"), f"{path}.id", TOKEN, "an id (A-Z a-z 0-9 _ -)")
        location = checker.choice(
            body.get("location"), f"{path}.location", LOCATIONS, LocationKind.DESK.value
        )
        timeout = checker.integer(
            body.get("ring_timeout_s"), f"{path}.ring_timeout_s", DEFAULT_LEG_TIMEOUT_S, 5, 120
        )
        device_id, number = body.get("device_id"), body.get("number")
        if (device_id is None) == (number is None):
            checker.error(path, "give either device_id or number")
            continue
        terminal: Doc = {"id": terminal_id, "location": location, "ring_timeout_s": timeout}
        if device_id is not None:
            terminal["device_id"] = checker.text(
                device_id, f"{path}.device_id", TOKEN, "a device id"
            )
        else:
            terminal["number"] = checker.number(number, f"{path}.number")
        if terminal_id is not None and any(t["id"] == terminal_id for t in out):
            checker.error(f"{path}.id", f"duplicate terminal id {terminal_id}")
        out.append(terminal)
    return out


def _fallback(checker: _Checker, value: Any, path: str, state: str) -> Doc:
    body = checker.obj(value or {}, path, ("kind", "greeting", "target"))
    kind = checker.choice(body.get("kind"), f"{path}.kind", FALLBACKS, "voicemail")
    greeting = body.get("greeting", state.lower() if state in BUILTIN_STATE_NAMES else "")
    if not isinstance(greeting, str) or not GREETING.match(greeting):
        checker.error(f"{path}.greeting", "a greeting name (a-z 0-9 _ -, up to 32)")
        greeting = ""
    target = body.get("target", "")
    if not isinstance(target, str) or len(target) > 64:
        checker.error(f"{path}.target", "a user id, team id or number")
        target = ""
    if kind == "external" and target and not E164.match(target):
        checker.error(f"{path}.target", "not an E.164 number")
    elif kind in ("delegate", "team") and target and not TOKEN.match(target):
        checker.error(f"{path}.target", "not a user or team id")
    return {"kind": kind, "greeting": greeting, "target": target}


def _states(checker: _Checker, value: Any) -> dict[str, Doc]:
    if not isinstance(value, dict) or not value:
        checker.error("states", "an object of availability states by name")
        return {}
    if len(value) > len(BUILTIN_STATE_NAMES) + MAX_CUSTOM_STATES:
        checker.error("states", "too many states")
        return {}
    out: dict[str, Doc] = {}
    for name, item in value.items():
        path = f"states.{name}"
        if not STATE_NAME.match(name):
            checker.error(path, "a state name (letter, then letters, digits, space _ -)")
            continue
        body = checker.obj(item, path, ("terminals", "ring_mode", "fallback"))
        terminals = checker.strings(
            body.get("terminals"), f"{path}.terminals", TOKEN, "a terminal id", MAX_TERMINALS
        )
        out[name] = {
            "terminals": terminals,
            "ring_mode": checker.choice(
                body.get("ring_mode"), f"{path}.ring_mode", RING_MODES, "sequential"
            ),
            "fallback": _fallback(checker, body.get("fallback"), f"{path}.fallback", name),
        }
    return out


def _manual(checker: _Checker, value: Any) -> Doc | None:
    if value is None:
        return None
    body = checker.obj(value, "manual", ("state", "until"))
    state = body.get("state")
    if not isinstance(state, str) or not STATE_NAME.match(state):
        checker.error("manual.state", "a state name")
        return None
    until = body.get("until")
    if until is not None:
        parsed = parse_instant(until)
        if parsed is None:
            checker.error("manual.until", "an ISO 8601 date-time with a zone (or Z)")
            return None
        until = parsed.isoformat()
    return {"state": state, "until": until}


def parse_instant(value: Any) -> datetime | None:
    """An aware datetime from ISO 8601 text (years 1970 to 9998, so moving it to any zone
    cannot overflow), or None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        return None
    return parsed


def _timezone(checker: _Checker, value: Any, path: str) -> str:
    # validate_profile() checks that the zone exists; here only the shape.
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        checker.error(path, "an IANA time zone name")
        return "UTC"
    return value


def _schedule(checker: _Checker, value: Any) -> Doc | None:
    if value is None:
        return None
    body = checker.obj(value, "schedule", ("timezone", "entries", "otherwise"))
    if not body:
        return None
    entries_in = body.get("entries")
    entries: list[Doc] = []
    if not isinstance(entries_in, list) or len(entries_in) > MAX_SCHEDULE_ENTRIES:
        checker.error("schedule.entries", f"a list of at most {MAX_SCHEDULE_ENTRIES} entries")
    else:
        for i, item in enumerate(entries_in):
            path = f"schedule.entries[{i}]"
            window = checker.time_range(item, path, extra=("state",))
            state = item.get("state") if isinstance(item, dict) else None
            if not isinstance(state, str) or not STATE_NAME.match(state):
                checker.error(f"{path}.state", "a state name")
            elif window is not None:
                entries.append({**window, "state": state})
    otherwise = body.get("otherwise")
    if not isinstance(otherwise, str) or not STATE_NAME.match(otherwise):
        checker.error("schedule.otherwise", "a state name")
        otherwise = BuiltinState.AVAILABLE.value
    return {
        "timezone": _timezone(checker, body.get("timezone"), "schedule.timezone"),
        "entries": entries,
        "otherwise": otherwise,
    }


def _call_flow(checker: _Checker, value: Any) -> Doc | None:
    if value is None:
        return None
    body = checker.obj(value, "call_flow", ("period", "timezone", "call_timeout_s", "redirects"))
    if not body:
        return None
    period = body.get("period")
    redirects_in = body.get("redirects")
    redirects: list[Doc] = []
    if redirects_in is None:
        redirects_in = []
    if not isinstance(redirects_in, list) or len(redirects_in) > MAX_REDIRECTS:
        checker.error("call_flow.redirects", f"at most {MAX_REDIRECTS} redirects")
    else:
        for i, item in enumerate(redirects_in):
            path = f"call_flow.redirects[{i}]"
            entry = checker.obj(item, path, ("kind", "target", "ring_timeout_s"))
            if not entry:
                continue
            kind = checker.choice(entry.get("kind"), f"{path}.kind", REDIRECTS, "voicemail")
            target = entry.get("target", "")
            if kind == "external":
                target = checker.number(target, f"{path}.target") or ""
            elif kind in ("user", "team"):
                target = checker.text(target, f"{path}.target", TOKEN, "a user or team id") or ""
            else:
                target = ""
            redirects.append(
                {
                    "kind": kind,
                    "target": target,
                    "ring_timeout_s": checker.integer(
                        entry.get("ring_timeout_s"),
                        f"{path}.ring_timeout_s",
                        DEFAULT_LEG_TIMEOUT_S,
                        5,
                        120,
                    ),
                }
            )
    return {
        "period": None if period is None else checker.time_range(period, "call_flow.period"),
        "timezone": _timezone(checker, body.get("timezone", "UTC"), "call_flow.timezone"),
        "call_timeout_s": checker.integer(
            body.get("call_timeout_s"), "call_flow.call_timeout_s", DEFAULT_LEG_TIMEOUT_S, 5, 120
        ),
        "redirects": redirects,
    }


def _screening(checker: _Checker, value: Any, previous: Doc) -> Doc:
    body = checker.obj(
        value or {},
        "screening",
        ("enabled", "ask_name", "password", "password_set", "skip_for_vip", "skip_for_internal"),
    )
    return {
        "enabled": checker.boolean(body.get("enabled"), "screening.enabled", False),
        "ask_name": checker.boolean(body.get("ask_name"), "screening.ask_name", True),
        "password_hash": _secret_field(
            checker, body, "password", "screening.password", previous.get("password_hash")
        ),
        "skip_for_vip": checker.boolean(body.get("skip_for_vip"), "screening.skip_for_vip", True),
        "skip_for_internal": checker.boolean(
            body.get("skip_for_internal"), "screening.skip_for_internal", True
        ),
    }


def _outbound(checker: _Checker, value: Any, previous: Doc) -> Doc:
    body = checker.obj(
        value or {},
        "outbound",
        (
            "cli_choice",
            "chosen_number",
            "international",
            "premium",
            "dialling_pin",
            "dialling_pin_set",
        ),
    )
    chosen = body.get("chosen_number")
    if chosen is not None:
        chosen = checker.number(chosen, "outbound.chosen_number")
    cli_choice = checker.choice(
        body.get("cli_choice"), "outbound.cli_choice", CLI_CHOICES, CliChoice.SMARTNUMBER.value
    )
    if cli_choice == CliChoice.CHOSEN.value and not chosen:
        checker.error("outbound.chosen_number", "choose the number to present")
    return {
        "cli_choice": cli_choice,
        "chosen_number": chosen,
        "international": checker.choice(
            body.get("international"),
            "outbound.international",
            PERMISSIONS,
            DialPermission.ALLOWED.value,
        ),
        "premium": checker.choice(
            body.get("premium"), "outbound.premium", PERMISSIONS, DialPermission.BLOCKED.value
        ),
        "dialling_pin_hash": _secret_field(
            checker,
            body,
            "dialling_pin",
            "outbound.dialling_pin",
            previous.get("dialling_pin_hash"),
        ),
    }


def parse_profile(body: Any, previous: Doc | None = None) -> Doc:
    """The stored document for an API body (a full replacement; secrets left out of the body
    keep their stored hashes from `previous`). Raises DocumentInvalid with every field error.
    Cross-field rules (states and terminals that exist, zones, loops) are checked by
    check_profile() against the user's directory data."""
    previous = previous or {}
    checker = _Checker()
    body = checker.obj(body, "", PROFILE_FIELDS + READ_ONLY_FIELDS)
    if checker.errors:
        raise DocumentInvalid(checker.errors)
    doc: Doc = {
        "terminals": _terminals(checker, body.get("terminals")),
        "states": _states(checker, body.get("states")),
        "default_state": BuiltinState.AVAILABLE.value,
        "vip_state": BuiltinState.AVAILABLE.value,
        "manual": _manual(checker, body.get("manual")),
        "schedule": _schedule(checker, body.get("schedule")),
        "logged_out": checker.boolean(body.get("logged_out"), "logged_out", False),
        "call_flow": _call_flow(checker, body.get("call_flow")),
        "vip_numbers": checker.strings(
            body.get("vip_numbers"), "vip_numbers", E164, "an E.164 number", MAX_LIST
        ),
        "inbound_filter": checker.inbound_filter(body.get("inbound_filter"), "inbound_filter"),
        "delegates": checker.strings(
            body.get("delegates"), "delegates", TOKEN, "a user id", MAX_DELEGATES
        ),
        "screening": _screening(checker, body.get("screening"), previous.get("screening") or {}),
        "outbound": _outbound(checker, body.get("outbound"), previous.get("outbound") or {}),
    }
    for key in ("default_state", "vip_state"):
        if key in body:
            value = body[key]
            if isinstance(value, str) and STATE_NAME.match(value):
                doc[key] = value
            else:
                checker.error(key, "a state name")
    if checker.errors:
        raise DocumentInvalid(checker.errors)
    return doc


def public_profile(
    doc: Doc, user: UserReply | None = None, trunk_dial: TrunkDial | None = None
) -> Doc:
    """The document as the API shows it: secrets replaced by whether they are set and, given
    the user's directory answer, each terminal's status now (active; deleted: the device is
    gone; blocked: it cannot be dialled, e.g. a number with no PSTN trunk). A client may send
    it back as it is: the read-only parts are ignored."""
    out = {k: v for k, v in doc.items() if k not in ("terminals", "screening", "outbound")}
    terminals = [dict(t) for t in doc["terminals"]]
    if user is not None and trunk_dial is not None:
        profile, _ = profile_from_document(user.tenant_id, user, doc, trunk_dial)
        for shown, terminal in zip(terminals, profile.terminals, strict=True):
            shown["status"] = terminal.status.value
    screening = dict(doc["screening"])
    screening["password_set"] = bool(screening.pop("password_hash", None))
    outbound = dict(doc["outbound"])
    outbound["dialling_pin_set"] = bool(outbound.pop("dialling_pin_hash", None))
    return {**out, "terminals": terminals, "screening": screening, "outbound": outbound}


def unknown_devices(doc: Doc, user: UserReply) -> list[FieldError]:
    """Device terminals that name no device of the user (refused when stored by the API)."""
    owned = {d.device_id for d in user.devices}
    return [
        FieldError(f"terminals[{i}].device_id", f"the user has no device {t['device_id']}")
        for i, t in enumerate(doc["terminals"])
        if "device_id" in t and t["device_id"] not in owned
    ]


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _range(doc: Doc) -> TimeRange:
    return TimeRange(
        frozenset(Weekday(DAYS.index(d)) for d in doc["days"]),
        _hhmm(doc["start"]),
        _hhmm(doc["end"]),
    )


def _filter(doc: Doc) -> InboundFilter:
    allowed = doc.get("allowed_only")
    return InboundFilter(
        blocked=frozenset(doc.get("blocked") or ()),
        allowed_only=None if allowed is None else frozenset(allowed),
        anonymous=AnonymousPolicy(doc.get("anonymous", AnonymousPolicy.ALLOW.value)),
    )


def _terminal(doc: Doc, devices: Mapping[str, Any], trunk_dial: TrunkDial) -> Terminal:
    kind = LocationKind(doc["location"])
    timeout = int(doc["ring_timeout_s"])
    if "device_id" in doc:
        device = devices.get(doc["device_id"])
        if device is None:
            return Terminal(
                doc["id"], kind, UNREACHABLE + doc["device_id"], timeout, DeviceStatus.DELETED
            )
        dial = device_dial_string(device, trunk_dial)
        if not dial:
            return Terminal(
                doc["id"], kind, UNREACHABLE + doc["device_id"], timeout, DeviceStatus.BLOCKED
            )
        return Terminal(doc["id"], kind, dial, timeout)
    number = doc["number"]
    dial = trunk_dial(number)
    if not dial:  # no PSTN trunk: the number cannot be rung
        return Terminal(doc["id"], kind, number, timeout, DeviceStatus.BLOCKED)
    return Terminal(doc["id"], kind, dial, timeout)


def profile_from_document(
    tenant_id: str, user: UserReply, doc: Doc, trunk_dial: TrunkDial
) -> tuple[RoutingProfile, OutboundProfile]:
    """The policy inputs for a stored document, with the dial strings of `user`'s devices as
    the directory gave them now."""
    devices = {d.device_id: d for d in user.devices}
    states = {
        name: AvailabilityState(
            name,
            tuple(s["terminals"]),
            RingMode(s["ring_mode"]),
            Fallback(
                FallbackKind(s["fallback"]["kind"]),
                greeting=s["fallback"].get("greeting", ""),
                target=s["fallback"].get("target", ""),
            ),
        )
        for name, s in doc["states"].items()
    }
    manual = doc.get("manual")
    schedule = doc.get("schedule")
    flow = doc.get("call_flow")
    screening = doc.get("screening") or {}
    profile = RoutingProfile(
        user_id=user.user_id,
        tenant_id=tenant_id,
        terminals=tuple(_terminal(t, devices, trunk_dial) for t in doc["terminals"]),
        states=states,
        default_state=doc.get("default_state", BuiltinState.AVAILABLE.value),
        manual=None
        if manual is None
        else ManualState(
            manual["state"],
            None if manual.get("until") is None else parse_instant(manual["until"]),
        ),
        schedule=None
        if schedule is None
        else WorkSchedule(
            schedule["timezone"],
            tuple(ScheduleEntry(_range(e), e["state"]) for e in schedule["entries"]),
            schedule["otherwise"],
        ),
        logged_out=bool(doc.get("logged_out")),
        call_flow=None
        if flow is None
        else CallFlowRule(
            None if flow.get("period") is None else _range(flow["period"]),
            flow["timezone"],
            int(flow["call_timeout_s"]),
            tuple(
                RedirectTarget(RedirectKind(r["kind"]), r.get("target", ""), r["ring_timeout_s"])
                for r in flow["redirects"]
            ),
        ),
        vip_numbers=frozenset(doc.get("vip_numbers") or ()),
        vip_state=doc.get("vip_state", BuiltinState.AVAILABLE.value),
        inbound_filter=_filter(doc.get("inbound_filter") or {}),
        delegates=tuple(doc.get("delegates") or ()),
        screening=Screening(
            enabled=bool(screening.get("enabled", False)),
            ask_name=bool(screening.get("ask_name", True)),
            password=screening.get("password_hash"),
            skip_for_vip=bool(screening.get("skip_for_vip", True)),
            skip_for_internal=bool(screening.get("skip_for_internal", True)),
        ),
    )
    out = doc.get("outbound") or {}
    outbound = OutboundProfile(
        user_id=user.user_id,
        smartnumber=user.smartnumber,
        cli_choice=CliChoice(out.get("cli_choice", CliChoice.SMARTNUMBER.value)),
        designated_number=user.outbound_numbers[0] if user.outbound_numbers else None,
        chosen_number=out.get("chosen_number"),
        international=DialPermission(out.get("international", DialPermission.ALLOWED.value)),
        premium=DialPermission(out.get("premium", DialPermission.BLOCKED.value)),
        dialling_pin=out.get("dialling_pin_hash"),
    )
    return profile, outbound


def _range_doc(rng: TimeRange) -> Doc:
    return {
        "days": [DAYS[d] for d in sorted(rng.days)],
        "start": rng.start.strftime("%H:%M"),
        "end": rng.end.strftime("%H:%M"),
    }


def document_from_profile(profile: RoutingProfile, previous: Doc) -> Doc:
    """The stored document after a change to the model (plans/changes.py). Terminals keep
    what they referenced in `previous` (device or number); a new terminal (a Temp location
    set by phone) is an external number. Outbound settings and secrets are kept."""
    before = {t["id"]: t for t in previous.get("terminals", [])}
    terminals: list[Doc] = []
    for t in profile.terminals:
        source = before.get(t.terminal_id)
        doc: Doc = {
            "id": t.terminal_id,
            "location": t.kind.value,
            "ring_timeout_s": t.ring_timeout_s,
        }
        if source is not None and "device_id" in source:
            doc["device_id"] = source["device_id"]
        elif source is not None:
            doc["number"] = source["number"]
        elif E164.match(t.dial_string):
            doc["number"] = t.dial_string
        else:
            raise DocumentInvalid(
                [FieldError("terminals", f"new terminal {t.terminal_id} is not a number")]
            )
        terminals.append(doc)
    flow = profile.call_flow
    screening = profile.screening
    return {
        "terminals": terminals,
        "states": {
            name: {
                "terminals": list(s.terminal_ids),
                "ring_mode": s.ring_mode.value,
                "fallback": {
                    "kind": s.fallback.kind.value,
                    "greeting": s.fallback.greeting,
                    "target": s.fallback.target,
                },
            }
            for name, s in profile.states.items()
        },
        "default_state": profile.default_state,
        "vip_state": profile.vip_state,
        "manual": None
        if profile.manual is None
        else {
            "state": profile.manual.state,
            "until": None if profile.manual.until is None else profile.manual.until.isoformat(),
        },
        "schedule": None
        if profile.schedule is None
        else {
            "timezone": profile.schedule.timezone,
            "entries": [{**_range_doc(e.when), "state": e.state} for e in profile.schedule.entries],
            "otherwise": profile.schedule.otherwise,
        },
        "logged_out": profile.logged_out,
        "call_flow": None
        if flow is None
        else {
            "period": None if flow.period is None else _range_doc(flow.period),
            "timezone": flow.timezone,
            "call_timeout_s": flow.call_timeout_s,
            "redirects": [
                {"kind": r.kind.value, "target": r.target, "ring_timeout_s": r.ring_timeout_s}
                for r in flow.redirects
            ],
        },
        "vip_numbers": sorted(profile.vip_numbers),
        "inbound_filter": {
            "blocked": sorted(profile.inbound_filter.blocked),
            "allowed_only": None
            if profile.inbound_filter.allowed_only is None
            else sorted(profile.inbound_filter.allowed_only),
            "anonymous": profile.inbound_filter.anonymous.value,
        },
        "delegates": list(profile.delegates),
        "screening": {
            "enabled": screening.enabled,
            "ask_name": screening.ask_name,
            "password_hash": screening.password,
            "skip_for_vip": screening.skip_for_vip,
            "skip_for_internal": screening.skip_for_internal,
        },
        "outbound": dict(
            previous.get("outbound")
            or {
                "cli_choice": CliChoice.SMARTNUMBER.value,
                "chosen_number": None,
                "international": DialPermission.ALLOWED.value,
                "premium": DialPermission.BLOCKED.value,
                "dialling_pin_hash": None,
            }
        ),
    }


def default_document(user: UserReply, trunk_dial: TrunkDial) -> Doc:
    """What a user without a stored profile has (source.default_routing), as a document:
    each reachable device of theirs a terminal named by its device id."""
    routing = default_routing(user, trunk_dial)
    previous = {
        "terminals": [
            {"id": t.terminal_id, "device_id": t.terminal_id} for t in routing.profile.terminals
        ]
    }
    return document_from_profile(routing.profile, previous)


def validation_view(profile: RoutingProfile) -> RoutingProfile:
    """The profile as validate_profile() should see it: the call password is a hash here
    (its digits were checked when it was set)."""
    if profile.screening.password is None:
        return profile
    return replace(profile, screening=replace(profile.screening, password=None))


# -- the tenant routing policy -------------------------------------------------------------

POLICY_FIELDS = ("custom_states", "inbound_filter", "dialling")
DIALLING_FIELDS = (
    "country_code",
    "emergency_numbers",
    "premium_prefixes",
    "credit_fail_open",
    "max_extension_digits",
)


def default_policy_document() -> Doc:
    dialling = TenantDialling()
    return {
        "custom_states": [],
        "inbound_filter": {"blocked": [], "allowed_only": None, "anonymous": "allow"},
        "dialling": {
            "country_code": dialling.country_code,
            "emergency_numbers": sorted(dialling.emergency_numbers),
            "premium_prefixes": sorted(dialling.premium_prefixes),
            "credit_fail_open": dialling.credit_fail_open,
            "max_extension_digits": dialling.max_extension_digits,
        },
    }


def parse_policy(body: Any) -> Doc:
    """The stored tenant policy for an API body (full replacement; left-out parts take their
    defaults). Raises DocumentInvalid with every field error."""
    checker = _Checker()
    body = checker.obj(body, "", (*POLICY_FIELDS, "tenant_id", "version"))
    if checker.errors:
        raise DocumentInvalid(checker.errors)
    default = default_policy_document()["dialling"]
    custom = checker.strings(
        body.get("custom_states"), "custom_states", STATE_NAME, "a state name", MAX_CUSTOM_STATES
    )
    for name in custom:
        if name in BUILTIN_STATE_NAMES:
            checker.error("custom_states", f"{name} is a built-in state")
    dial = checker.obj(body.get("dialling") or {}, "dialling", DIALLING_FIELDS)
    country = dial.get("country_code", default["country_code"])
    if not isinstance(country, str) or not COUNTRY_CODE.match(country):
        checker.error("dialling.country_code", "a country code like +44")
        country = default["country_code"]
    emergency = (
        checker.strings(
            dial["emergency_numbers"], "dialling.emergency_numbers", SHORT_CODE, "a short code", 10
        )
        if "emergency_numbers" in dial
        else default["emergency_numbers"]
    )
    if "emergency_numbers" in dial and not emergency:
        checker.error("dialling.emergency_numbers", "at least one emergency number")
    premium = (
        checker.strings(
            dial["premium_prefixes"],
            "dialling.premium_prefixes",
            PREFIX,
            "a +prefix* or E.164 number",
            MAX_LIST,
        )
        if "premium_prefixes" in dial
        else default["premium_prefixes"]
    )
    doc: Doc = {
        "custom_states": custom,
        "inbound_filter": checker.inbound_filter(body.get("inbound_filter"), "inbound_filter"),
        "dialling": {
            "country_code": country,
            "emergency_numbers": sorted(emergency),
            "premium_prefixes": sorted(premium),
            "credit_fail_open": checker.boolean(
                dial.get("credit_fail_open"), "dialling.credit_fail_open", False
            ),
            "max_extension_digits": checker.integer(
                dial.get("max_extension_digits"),
                "dialling.max_extension_digits",
                default["max_extension_digits"],
                2,
                6,
            ),
        },
    }
    if checker.errors:
        raise DocumentInvalid(checker.errors)
    return doc


def policy_from_document(
    tenant_id: str, doc: Doc, user: UserReply | None = None
) -> tuple[TenantPolicy, TenantDialling]:
    """The tenant's policy inputs; the CLIs a user may present come from `user` (directory)."""
    dialling = doc.get("dialling") or {}
    default = TenantDialling()
    return (
        TenantPolicy(
            tenant_id,
            custom_states=frozenset(doc.get("custom_states") or ()),
            inbound_filter=_filter(doc.get("inbound_filter") or {}),
        ),
        TenantDialling(
            country_code=dialling.get("country_code", default.country_code),
            emergency_numbers=frozenset(
                dialling.get("emergency_numbers", default.emergency_numbers)
            ),
            premium_prefixes=frozenset(dialling.get("premium_prefixes", default.premium_prefixes)),
            allowed_clis=frozenset(user.allowed_clis) if user is not None else frozenset(),
            credit_fail_open=bool(dialling.get("credit_fail_open", default.credit_fail_open)),
            max_extension_digits=int(
                dialling.get("max_extension_digits", default.max_extension_digits)
            ),
        ),
    )


def user_routing(
    user: UserReply, profile_doc: Doc | None, policy_doc: Doc | None, trunk_dial: TrunkDial
) -> UserRouting:
    """Everything to plan a call to or from `user`: the stored profile (or the default) and
    the tenant's policy (or the default)."""
    tenant, dialling = policy_from_document(
        user.tenant_id, policy_doc or default_policy_document(), user
    )
    if profile_doc is None:
        routing = default_routing(user, trunk_dial)
        return replace(routing, tenant=tenant, dialling=dialling)
    profile, outbound = profile_from_document(user.tenant_id, user, profile_doc, trunk_dial)
    return UserRouting(profile=profile, outbound=outbound, tenant=tenant, dialling=dialling)


def check_profile(
    user: UserReply, doc: Doc, policy_doc: Doc | None, trunk_dial: TrunkDial
) -> list[FieldError]:
    """Every problem of a profile document for `user` on its own (validate_profile()).
    Device ids the user does not have are checked by unknown_devices() (the API refuses
    them; a change by phone keeps a deleted device as DELETED); divert loops need the
    tenant's other profiles (find_divert_loops())."""
    tenant, _ = policy_from_document(user.tenant_id, policy_doc or default_policy_document())
    profile, _ = profile_from_document(user.tenant_id, user, doc, trunk_dial)
    return validate_profile(validation_view(profile), tenant)


def divert_references(doc: Doc) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(field, user id) and (field, team id) pairs a profile sends calls to."""
    users: list[tuple[str, str]] = [
        (f"delegates[{i}]", delegate) for i, delegate in enumerate(doc.get("delegates") or ())
    ]
    teams: list[tuple[str, str]] = []
    for name, state in doc["states"].items():
        fallback = state["fallback"]
        path = f"states.{name}.fallback.target"
        if fallback["kind"] == FallbackKind.DELEGATE.value and fallback.get("target"):
            users.append((path, fallback["target"]))
        elif fallback["kind"] == FallbackKind.TEAM.value and fallback.get("target"):
            teams.append((path, fallback["target"]))
    for i, redirect in enumerate((doc.get("call_flow") or {}).get("redirects") or ()):
        path = f"call_flow.redirects[{i}].target"
        if redirect["kind"] == RedirectKind.USER.value:
            users.append((path, redirect["target"]))
        elif redirect["kind"] == RedirectKind.TEAM.value:
            teams.append((path, redirect["target"]))
    return users, teams


def divert_view(tenant_id: str, user_id: str, doc: Doc) -> RoutingProfile:
    """A stored profile for find_divert_loops() (which reads only who calls divert to)."""
    user = UserReply(tenant_id=tenant_id, user_id=user_id)
    return profile_from_document(tenant_id, user, doc, lambda _number: "")[0]
