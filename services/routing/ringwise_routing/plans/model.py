"""A user's routing profile as data (frozen dataclasses, no I/O).

The profile says where a call to the user's number goes: which availability state applies
(chosen by hand, by a work schedule, or the default), that state's ordered terminals and ring
mode, the fallback when nobody answers, the tenant's call-flow rule with up to 3 redirects,
VIP contacts, inbound filters, delegates and screening. engine.plan_call() reads it;
validation.validate_profile() checks it before it is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import Enum, IntEnum

MAX_TERMINALS = 5  # seed 004: "up to 5 terminals rung one by one or together"
MAX_REDIRECTS = 3  # seed 002: "up to 3 redirects"; also the longest divert chain at run time
MIN_LEG_TIMEOUT_S = 5
MAX_LEG_TIMEOUT_S = 120
DEFAULT_LEG_TIMEOUT_S = 20

# Q.850 causes for rejected calls (as Asterisk maps them to SIP, RFC 3398).
CAUSE_CALL_REJECTED = 21  # -> 403 Forbidden (as Asterisk maps it)
CAUSE_USER_BUSY = 17  # -> 486 Busy Here
CAUSE_NO_ANSWER = 19  # -> 480 Temporarily Unavailable
CAUSE_UNALLOCATED = 1  # -> 404 (a redirect chain that cannot be followed)

# Asterisk core sounds played before a reject.
PROMPT_CALL_REJECTED = "sound:ss-noservice"
PROMPT_NOT_AVAILABLE = "sound:vm-nobodyavail"


class Weekday(IntEnum):
    """ISO weekday numbers minus one, so `datetime.weekday()` indexes them directly."""

    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6


ALL_DAYS: frozenset[Weekday] = frozenset(Weekday)
WORK_DAYS: frozenset[Weekday] = frozenset(
    {Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI}
)


class BuiltinState(str, Enum):
    AVAILABLE = "Available"
    BUSY = "Busy"
    TRAVELLING = "Travelling"
    HOLIDAY = "Holiday"


BUILTIN_STATE_NAMES: frozenset[str] = frozenset(s.value for s in BuiltinState)


class LocationKind(str, Enum):
    MOBILE = "Mobile"
    HOME = "Home"
    DESK = "Desk"
    TEMP = "Temp"


class DeviceStatus(str, Enum):
    ACTIVE = "active"
    BLOCKED = "blocked"  # barred by an admin (lost phone, abuse): never rung
    DELETED = "deleted"  # removed; still referenced until the profile is edited: never rung


class RingMode(str, Enum):
    SEQUENTIAL = "sequential"  # one by one, each for its own timeout
    SIMULTANEOUS = "simultaneous"  # "Duet": all together, first answer wins


class FallbackKind(str, Enum):
    VOICEMAIL = "voicemail"
    DELEGATE = "delegate"
    TEAM = "team"
    EXTERNAL = "external"
    NO_MESSAGES = "no_messages"  # "no voicemail message can be left": a prompt, then reject


class AnonymousPolicy(str, Enum):
    ALLOW = "allow"
    REJECT = "reject"


class RedirectKind(str, Enum):
    USER = "user"  # another Ringwise user: the call continues with that user's own plan
    TEAM = "team"
    EXTERNAL = "external"  # a dialable number, rung for the redirect's timeout
    VOICEMAIL = "voicemail"


@dataclass(frozen=True)
class Terminal:
    """One place the user can be reached: a SIP device or a dialable number."""

    terminal_id: str
    kind: LocationKind
    dial_string: str
    ring_timeout_s: int = DEFAULT_LEG_TIMEOUT_S
    status: DeviceStatus = DeviceStatus.ACTIVE


@dataclass(frozen=True)
class Fallback:
    """What happens when nobody answered (or the state rings nobody)."""

    kind: FallbackKind
    greeting: str = ""  # VOICEMAIL / NO_MESSAGES: the greeting to play (e.g. "busy")
    target: str = ""  # DELEGATE: user id ("" = first usable delegate); TEAM: team id; EXTERNAL


@dataclass(frozen=True)
class AvailabilityState:
    """One availability state: whom to ring, how, and what then."""

    name: str
    terminal_ids: tuple[str, ...]  # ordered; empty = ring nobody (Busy, Holiday)
    ring_mode: RingMode
    fallback: Fallback


@dataclass(frozen=True)
class TimeRange:
    """HH:MM to HH:MM local time on the given days; end <= start crosses midnight (the days
    name the day the range starts on)."""

    days: frozenset[Weekday]
    start: time
    end: time


@dataclass(frozen=True)
class ScheduleEntry:
    when: TimeRange
    state: str


@dataclass(frozen=True)
class WorkSchedule:
    """Supervisor-defined schedule (seed 004): the first matching entry's state applies;
    outside every entry `otherwise` does. Evaluated in `timezone` (IANA name), on the wall
    clock, so 09:00 stays 09:00 across DST changes."""

    timezone: str
    entries: tuple[ScheduleEntry, ...]
    otherwise: str


@dataclass(frozen=True)
class ManualState:
    """A state the user chose (API, app or feature code). It beats the schedule until
    `until` (None = until changed again)."""

    state: str
    until: datetime | None = None


@dataclass(frozen=True)
class RedirectTarget:
    kind: RedirectKind
    target: str = ""  # user id, team id or dialable number; unused for VOICEMAIL
    ring_timeout_s: int = DEFAULT_LEG_TIMEOUT_S  # EXTERNAL only


@dataclass(frozen=True)
class CallFlowRule:
    """Seed 002 call-flow rule: Always, or a period with days (period=None means Always).
    While it applies, the user's terminals ring for `call_timeout_s`, then the redirects are
    tried in order, then the state's fallback."""

    period: TimeRange | None
    timezone: str
    call_timeout_s: int
    redirects: tuple[RedirectTarget, ...]


@dataclass(frozen=True)
class InboundFilter:
    """Block list, allow list (None = everyone allowed) and the anonymous-caller policy.
    Entries are E.164 numbers, or a prefix ending in '*' ("+44870*")."""

    blocked: frozenset[str] = frozenset()
    allowed_only: frozenset[str] | None = None
    anonymous: AnonymousPolicy = AnonymousPolicy.ALLOW


@dataclass(frozen=True)
class Screening:
    """Call screening / whisper and call introduction (seeds 000, 001)."""

    enabled: bool = False
    ask_name: bool = True  # caller records their name; the answering leg hears it
    password: str | None = field(default=None, repr=False)  # caller must enter it first
    skip_for_vip: bool = True
    skip_for_internal: bool = True


@dataclass(frozen=True)
class TenantPolicy:
    tenant_id: str
    custom_states: frozenset[str] = frozenset()  # tenant-defined availability state names
    inbound_filter: InboundFilter = InboundFilter()


@dataclass(frozen=True)
class RoutingProfile:
    user_id: str
    tenant_id: str
    terminals: tuple[Terminal, ...]
    states: Mapping[str, AvailabilityState]
    default_state: str = BuiltinState.AVAILABLE.value
    manual: ManualState | None = None
    schedule: WorkSchedule | None = None
    logged_out: bool = False  # location "None" / hot-desk log-out: everything to voicemail
    call_flow: CallFlowRule | None = None
    vip_numbers: frozenset[str] = frozenset()
    vip_state: str = BuiltinState.AVAILABLE.value  # whose terminals ring for a VIP
    inbound_filter: InboundFilter = InboundFilter()
    delegates: tuple[str, ...] = ()  # user ids, in order of preference
    screening: Screening = Screening()

    def terminal(self, terminal_id: str) -> Terminal | None:
        for terminal in self.terminals:
            if terminal.terminal_id == terminal_id:
                return terminal
        return None


@dataclass(frozen=True)
class Caller:
    number: str | None  # E.164; None = withheld / anonymous
    name: str = ""
    internal_user_id: str | None = None  # set when the caller is a user of the same tenant

    @property
    def anonymous(self) -> bool:
        return not self.number or self.number.lower() in {"anonymous", "unknown", "restricted"}


@dataclass(frozen=True)
class PlanContext:
    """Where this call is in a chain of diverts (the executor passes it on)."""

    tenant: TenantPolicy
    divert_chain: tuple[str, ...] = ()  # user ids already tried, in order
    delegate_on_demand: bool = False  # the caller or user asked for the delegate now


def standard_states(
    terminal_ids: tuple[str, ...],
    *,
    ring_mode: RingMode = RingMode.SEQUENTIAL,
    travelling_ids: tuple[str, ...] | None = None,
) -> dict[str, AvailabilityState]:
    """The four seed-000 states with their own greetings: Available and Travelling ring,
    Busy and Holiday go straight to voicemail."""

    def voicemail(greeting: str) -> Fallback:
        return Fallback(FallbackKind.VOICEMAIL, greeting=greeting)

    return {
        "Available": AvailabilityState(
            "Available", terminal_ids, ring_mode, voicemail("available")
        ),
        "Busy": AvailabilityState("Busy", (), ring_mode, voicemail("busy")),
        "Travelling": AvailabilityState(
            "Travelling",
            terminal_ids if travelling_ids is None else travelling_ids,
            ring_mode,
            voicemail("travelling"),
        ),
        "Holiday": AvailabilityState("Holiday", (), ring_mode, voicemail("holiday")),
    }
