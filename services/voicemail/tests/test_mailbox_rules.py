"""The mailbox rules from the manual: PINs, lockout, greetings, deposits, retention."""

from __future__ import annotations

import io
import struct
import wave
from datetime import UTC, date, datetime, timedelta

import pytest
from ringwise_voicemail.mailbox import pin
from ringwise_voicemail.mailbox.deposit import DepositLimits, trim_silence
from ringwise_voicemail.mailbox.greetings import (
    Availability,
    Greeting,
    GreetingKind,
    choose_greeting,
    expired_temporaries,
    temporary_expiry,
)
from ringwise_voicemail.mailbox.retention import Folder, RetentionPolicy
from ringwise_voicemail.messages.audio import wav_duration_s
from ringwise_voicemail.messages.phone import envelope_media

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


# -- PIN rules -------------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["1234", "9000", "123456789012", "5555"])
def test_a_pin_of_four_or_more_digits_not_starting_with_zero_is_accepted(good: str) -> None:
    pin.check_new_pin(good)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("123", "at least 4"),
        ("0123", "cannot begin with zero"),
        ("0000", "cannot begin with zero"),
        ("12a4", "digits only"),
        ("", "digits only"),
        ("12 34", "digits only"),
        ("١٢٣٤", "digits only"),  # Arabic-Indic digits are not keypad digits
        ("1234567890123", "at most 12"),
    ],
)
def test_a_pin_breaking_a_rule_is_rejected_with_the_rule(bad: str, why: str) -> None:
    with pytest.raises(pin.PinRejected, match=why):
        pin.check_new_pin(bad)


def test_a_pin_is_stored_as_an_argon2_hash_that_only_the_pin_matches() -> None:
    hashed = pin.hash_pin("4711")
    assert hashed.startswith("$argon2id$")
    assert "4711" not in hashed
    assert pin.pin_matches(hashed, "4711")
    assert not pin.pin_matches(hashed, "4712")
    assert not pin.pin_matches("not-a-hash", "4711")


def test_hashing_refuses_a_pin_that_breaks_the_rules() -> None:
    with pytest.raises(pin.PinRejected):
        pin.hash_pin("0123")


# -- lockout ---------------------------------------------------------------------------------


def test_the_right_pin_logs_in_and_clears_earlier_failures_with_an_audit_note() -> None:
    hashed = pin.hash_pin("4711")
    state = pin.LockState()
    for _ in range(2):
        attempt = pin.attempt_login(hashed, "1111", state, T0)
        assert attempt.outcome is pin.Outcome.WRONG_PIN
        state = attempt.state
    assert state.failures == 2
    ok = pin.attempt_login(hashed, "4711", state, T0)
    assert ok.accepted
    assert ok.state == pin.LockState()
    assert ok.audit == "login after 2 failed attempts"


def test_five_wrong_pins_lock_the_mailbox_for_fifteen_minutes_and_audit_it() -> None:
    hashed = pin.hash_pin("4711")
    state = pin.LockState()
    outcomes = []
    for i in range(pin.MAX_FAILURES):
        attempt = pin.attempt_login(hashed, "1111", state, T0 + timedelta(seconds=i))
        outcomes.append(attempt.outcome)
        state = attempt.state
    assert outcomes == [pin.Outcome.WRONG_PIN] * 4 + [pin.Outcome.LOCKED_OUT]
    assert attempt.audit is not None and "locked after 5 wrong PINs" in attempt.audit
    locked_at = T0 + timedelta(seconds=4)
    assert state.locked_until == locked_at + pin.LOCKOUT

    # Even the right PIN is refused while locked, and the refusal is audited.
    during = pin.attempt_login(
        hashed, "4711", state, locked_at + pin.LOCKOUT - timedelta(seconds=1)
    )
    assert during.outcome is pin.Outcome.LOCKED
    assert during.audit == "login refused: mailbox locked"
    assert during.state == state

    # Once the lock has run out the count starts afresh.
    after = pin.attempt_login(hashed, "1111", state, locked_at + pin.LOCKOUT)
    assert after.outcome is pin.Outcome.WRONG_PIN
    assert after.state == pin.LockState(failures=1)
    assert pin.attempt_login(hashed, "4711", after.state, locked_at + pin.LOCKOUT).accepted


def test_a_mailbox_without_a_pin_cannot_be_entered_by_phone() -> None:
    attempt = pin.attempt_login(None, "1234", pin.LockState(), T0)
    assert attempt.outcome is pin.Outcome.NO_PIN
    assert not attempt.accepted


# -- greetings -------------------------------------------------------------------------------

LONDON = "Europe/London"
NEW_YORK = "America/New_York"


def greeting(kind: GreetingKind, for_day: date | None = None) -> Greeting:
    return Greeting(kind, f"g/{kind.value}.wav", T0 - timedelta(days=3), for_day)


ALL = {kind: greeting(kind) for kind in GreetingKind}


@pytest.mark.parametrize(
    ("have", "availability", "absence_on", "plays", "accepts"),
    [
        # Only a permanent greeting: it plays whatever the state.
        ({GreetingKind.PERMANENT}, Availability.AVAILABLE, False, GreetingKind.PERMANENT, True),
        ({GreetingKind.PERMANENT}, Availability.BUSY, False, GreetingKind.PERMANENT, True),
        # Busy greeting only when busy.
        (
            {GreetingKind.PERMANENT, GreetingKind.BUSY},
            Availability.BUSY,
            False,
            GreetingKind.BUSY,
            True,
        ),
        (
            {GreetingKind.PERMANENT, GreetingKind.BUSY},
            Availability.AVAILABLE,
            False,
            GreetingKind.PERMANENT,
            True,
        ),
        # Extended absence: its greeting and no message, once enabled or when the state says.
        (
            {GreetingKind.PERMANENT, GreetingKind.EXTENDED_ABSENCE},
            Availability.AVAILABLE,
            True,
            GreetingKind.EXTENDED_ABSENCE,
            False,
        ),
        (
            {GreetingKind.PERMANENT, GreetingKind.EXTENDED_ABSENCE},
            Availability.EXTENDED_ABSENCE,
            False,
            GreetingKind.EXTENDED_ABSENCE,
            False,
        ),
        # Recorded but not enabled: ignored.
        (
            {GreetingKind.PERMANENT, GreetingKind.EXTENDED_ABSENCE},
            Availability.UNAVAILABLE,
            False,
            GreetingKind.PERMANENT,
            True,
        ),
        # No personal greeting: the system greeting (None).
        ({GreetingKind.NAME}, Availability.AVAILABLE, False, None, True),
        (set(), Availability.UNAVAILABLE, False, None, True),
    ],
)
def test_the_availability_state_picks_the_greeting(
    have: set[GreetingKind],
    availability: Availability,
    absence_on: bool,
    plays: GreetingKind | None,
    accepts: bool,
) -> None:
    choice = choose_greeting(
        {k: ALL[k] for k in have}, availability, T0, LONDON, extended_absence_enabled=absence_on
    )
    assert (choice.greeting.kind if choice.greeting else None) is plays
    assert choice.accepts_message is accepts


def test_the_system_greeting_carries_the_recorded_name() -> None:
    choice = choose_greeting(
        {GreetingKind.NAME: ALL[GreetingKind.NAME]}, Availability.BUSY, T0, LONDON
    )
    assert choice.greeting is None
    assert choice.name == ALL[GreetingKind.NAME]
    assert choice.reason == "system greeting"


def test_a_temporary_greeting_plays_until_the_end_of_its_day_in_the_users_time_zone() -> None:
    day = date(2026, 11, 25)
    temporary = greeting(GreetingKind.TEMPORARY, for_day=day)
    have = {GreetingKind.PERMANENT: ALL[GreetingKind.PERMANENT], GreetingKind.TEMPORARY: temporary}
    # Midnight in New York is 05:00 UTC the next day.
    end = temporary_expiry(day, NEW_YORK)
    assert end == datetime(2026, 11, 26, 5, 0, tzinfo=UTC)
    just_before = choose_greeting(
        have, Availability.AVAILABLE, end - timedelta(seconds=1), NEW_YORK
    )
    assert just_before.greeting == temporary
    at_end = choose_greeting(have, Availability.AVAILABLE, end, NEW_YORK)
    assert at_end.greeting == ALL[GreetingKind.PERMANENT]
    assert expired_temporaries(have, end - timedelta(seconds=1), NEW_YORK) == []
    assert expired_temporaries(have, end, NEW_YORK) == [temporary]


def test_a_temporary_greeting_ends_with_the_local_day_it_was_recorded_on_not_utcs() -> None:
    # Recorded in the evening for the same local day; the local day decides, not UTC's.
    recorded = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # 22:00 on the 25th in New York
    temporary = Greeting(GreetingKind.TEMPORARY, "g/t.wav", recorded)
    have = {GreetingKind.TEMPORARY: temporary}
    assert choose_greeting(have, Availability.AVAILABLE, recorded, NEW_YORK).greeting == temporary
    assert expired_temporaries(have, datetime(2026, 11, 26, 5, 0, tzinfo=UTC), NEW_YORK) == [
        temporary
    ]


# -- deposits --------------------------------------------------------------------------------


def test_recordings_shorter_than_the_minimum_are_hang_ups_not_messages() -> None:
    limits = DepositLimits(max_seconds=120, min_seconds=2.0)
    assert not limits.keeps(0.0)
    assert not limits.keeps(1.99)
    assert limits.keeps(2.0)
    assert limits.keeps(119.5)


@pytest.mark.parametrize(("max_s", "min_s"), [(4, 1.0), (60, -1.0), (60, 60.0)])
def test_deposit_limits_refuse_nonsense(max_s: int, min_s: float) -> None:
    with pytest.raises(ValueError):
        DepositLimits(max_seconds=max_s, min_seconds=min_s)


# -- retention -------------------------------------------------------------------------------


def test_unsaved_messages_go_after_exactly_thirty_days_and_archived_ones_stay() -> None:
    policy = RetentionPolicy()
    received = T0
    limit = received + timedelta(days=30)
    assert not policy.is_due(Folder.NEW, received, limit - timedelta(microseconds=1))
    assert policy.is_due(Folder.NEW, received, limit)
    assert not policy.is_due(Folder.SAVED, received, received + timedelta(days=3650))
    assert not policy.is_due(Folder.ARCHIVED, received, received + timedelta(days=3650))


def test_a_tenant_can_shorten_unsaved_and_bound_saved_retention() -> None:
    policy = RetentionPolicy(unsaved_days=7, saved_days=90)
    assert policy.is_due(Folder.NEW, T0, T0 + timedelta(days=7))
    assert not policy.is_due(Folder.SAVED, T0, T0 + timedelta(days=89, hours=23))
    assert policy.is_due(Folder.SAVED, T0, T0 + timedelta(days=90))
    assert not policy.is_due(Folder.ARCHIVED, T0, T0 + timedelta(days=900))
    assert policy.unsaved_cutoff(T0) == T0 - timedelta(days=7)
    assert policy.saved_cutoff(T0) == T0 - timedelta(days=90)


@pytest.mark.parametrize(("unsaved", "saved"), [(0, None), (30, 0)])
def test_retention_of_zero_days_is_refused(unsaved: int, saved: int | None) -> None:
    with pytest.raises(ValueError):
        RetentionPolicy(unsaved_days=unsaved, saved_days=saved)


def _wav(*parts: tuple[float, int]) -> bytes:
    """(seconds, amplitude) pieces of a 8 kHz 16-bit mono square-ish tone (0 = silence)."""
    samples = b"".join(
        struct.pack("<h", amp if (i // 10) % 2 else -amp)
        for seconds, amp in parts
        for i in range(round(seconds * 8000))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples)
    return out.getvalue()


def test_silence_beyond_half_a_second_is_trimmed_from_both_ends() -> None:
    recorded = _wav((3.0, 0), (4.0, 3000), (10.0, 0))  # e.g. ended by 10 s of silence
    trimmed = trim_silence(recorded)
    assert wav_duration_s(trimmed) == pytest.approx(0.5 + 4.0 + 0.5, abs=0.02)
    assert trim_silence(trimmed) == trimmed


def test_short_edges_all_silence_and_other_formats_are_left_alone() -> None:
    tight = _wav((0.3, 0), (2.0, 3000), (0.2, 0))
    assert trim_silence(tight) == tight
    silent = _wav((5.0, 0))
    assert trim_silence(silent) == silent
    assert trim_silence(b"not a wav") == b"not a wav"


def test_the_envelope_says_when_in_the_owners_time_zone_and_from_whom() -> None:
    doc = {"received_at": datetime(2026, 11, 25, 14, 5, tzinfo=UTC), "caller_number": "+4416"}
    # 09:05 on Wednesday 25 November in New York.
    assert envelope_media(doc, "America/New_York") == [
        "sound:vm-received",
        "sound:digits/day-3",
        "sound:digits/mon-10",
        "number:25",
        "sound:digits/at",
        "number:9",
        "number:5",
        "sound:digits/a-m",
        "sound:vm-from-phonenumber",
        "digits:4416",
    ]
    anonymous = {"received_at": datetime(2026, 11, 25, 12, 0, tzinfo=UTC), "caller_number": ""}
    said = envelope_media(anonymous, "UTC")
    assert said[5:] == ["number:12", "sound:digits/p-m", "sound:vm-unknown-caller"]
