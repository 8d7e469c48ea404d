"""Which greeting a caller hears, chosen by the user's availability state (pure).

Kinds, from the manual: permanent (the default), temporary (for one day, gone during the
night that ends it, in the user's time zone), extended absence (the caller may not leave a
message), name (used inside the system greeting when no personal greeting is set).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import Enum
from zoneinfo import ZoneInfo


class GreetingKind(Enum):
    PERMANENT = "permanent"
    TEMPORARY = "temporary"
    EXTENDED_ABSENCE = "extended_absence"
    NAME = "name"
    BUSY = "busy"


class Availability(Enum):
    """The user's state as routing sees it when the call reaches the mailbox."""

    AVAILABLE = "available"  # rang, not answered
    BUSY = "busy"
    UNAVAILABLE = "unavailable"  # do-not-disturb, off-shift, no device
    EXTENDED_ABSENCE = "extended_absence"


@dataclass(frozen=True)
class Greeting:
    kind: GreetingKind
    audio_key: str  # S3 key of the audio
    recorded_at: datetime
    # Temporary greetings: the local day they are for.
    for_day: date | None = None


def temporary_expiry(for_day: date, tz: str) -> datetime:
    """End of the day the temporary greeting was recorded for, in the user's time zone."""
    next_midnight = datetime.combine(for_day + timedelta(days=1), time(0), tzinfo=ZoneInfo(tz))
    return next_midnight


def is_live(greeting: Greeting, now: datetime, tz: str) -> bool:
    if greeting.kind is not GreetingKind.TEMPORARY:
        return True
    day = greeting.for_day or greeting.recorded_at.astimezone(ZoneInfo(tz)).date()
    return now < temporary_expiry(day, tz)


@dataclass(frozen=True)
class GreetingChoice:
    """What the deposit flow plays, and whether a message may follow."""

    # The personal greeting to play, or None for the system greeting.
    greeting: Greeting | None
    # For the system greeting: the user's recorded name inside it (else the number is read).
    name: Greeting | None
    accepts_message: bool
    reason: str


def choose_greeting(
    greetings: dict[GreetingKind, Greeting],
    availability: Availability,
    now: datetime,
    tz: str,
    extended_absence_enabled: bool = False,
) -> GreetingChoice:
    """Extended absence wins while enabled (and no message); then a live temporary greeting;
    then busy (when busy); then the permanent one; else the system greeting with the name."""
    name = greetings.get(GreetingKind.NAME)
    absent = greetings.get(GreetingKind.EXTENDED_ABSENCE)
    if absent is not None and (
        extended_absence_enabled or availability is Availability.EXTENDED_ABSENCE
    ):
        return GreetingChoice(absent, name, accepts_message=False, reason="extended absence")
    temporary = greetings.get(GreetingKind.TEMPORARY)
    if temporary is not None and is_live(temporary, now, tz):
        return GreetingChoice(temporary, name, accepts_message=True, reason="temporary greeting")
    busy = greetings.get(GreetingKind.BUSY)
    if busy is not None and availability is Availability.BUSY:
        return GreetingChoice(busy, name, accepts_message=True, reason="busy greeting")
    permanent = greetings.get(GreetingKind.PERMANENT)
    if permanent is not None:
        return GreetingChoice(permanent, name, accepts_message=True, reason="permanent greeting")
    return GreetingChoice(None, name, accepts_message=True, reason="system greeting")


def expired_temporaries(
    greetings: dict[GreetingKind, Greeting], now: datetime, tz: str
) -> list[Greeting]:
    """Temporary greetings past their day: the nightly job deletes them (audio and record)."""
    temporary = greetings.get(GreetingKind.TEMPORARY)
    if temporary is not None and not is_live(temporary, now, tz):
        return [temporary]
    return []
