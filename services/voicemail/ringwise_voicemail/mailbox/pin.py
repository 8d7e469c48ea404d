"""Mailbox PINs: the rules from the manual, argon2 hashing, and lockout after repeated failures.

Pure apart from the hash itself: the lockout state is data the store persists, and every
decision takes the current time, so a test drives the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PIN_DIGITS = 4
MAX_PIN_DIGITS = 12
# Failures in a row before the mailbox locks, and for how long.
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)

# Moderate cost: a PIN is checked once per mailbox login, and the 4-digit space is small
# anyway, so the lockout (not the hash cost) is what stops guessing by phone.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class PinRejected(ValueError):
    """A new PIN breaks a rule; the message says which, for the caller or the API."""


def check_new_pin(pin: str) -> None:
    """The manual's rules: digits only, at least four, never starting with 0."""
    if not pin.isdigit() or not pin.isascii():
        raise PinRejected("a PIN is made of digits only")
    if len(pin) < MIN_PIN_DIGITS:
        raise PinRejected(f"a PIN has at least {MIN_PIN_DIGITS} digits")
    if len(pin) > MAX_PIN_DIGITS:
        raise PinRejected(f"a PIN has at most {MAX_PIN_DIGITS} digits")
    if pin.startswith("0"):
        raise PinRejected("a PIN cannot begin with zero")


def hash_pin(pin: str) -> str:
    check_new_pin(pin)
    return _hasher.hash(pin)


def pin_matches(pin_hash: str, pin: str) -> bool:
    try:
        return _hasher.verify(pin_hash, pin)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class LockState:
    """What the store keeps per mailbox between login attempts."""

    failures: int = 0
    locked_until: datetime | None = None

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


class Outcome(Enum):
    ACCEPTED = "accepted"
    WRONG_PIN = "wrong_pin"
    LOCKED_OUT = "locked_out"  # this attempt locked the mailbox
    LOCKED = "locked"  # already locked: the PIN was not even checked
    NO_PIN = "no_pin"  # no PIN set: phone access stays closed until one is set


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    state: LockState
    # An audit line when something a security reviewer cares about happened.
    audit: str | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome is Outcome.ACCEPTED


def attempt_login(pin_hash: str | None, pin: str, state: LockState, now: datetime) -> Attempt:
    """One login attempt by phone or API; returns the outcome and the state to store."""
    if state.locked_at(now):
        return Attempt(Outcome.LOCKED, state, audit="login refused: mailbox locked")
    if state.locked_until is not None:
        state = LockState()  # the lock has expired: a fresh count
    if not pin_hash:
        return Attempt(Outcome.NO_PIN, state)
    if pin_matches(pin_hash, pin):
        audit = f"login after {state.failures} failed attempts" if state.failures else None
        return Attempt(Outcome.ACCEPTED, LockState(), audit=audit)
    failures = state.failures + 1
    if failures >= MAX_FAILURES:
        until = now + LOCKOUT
        return Attempt(
            Outcome.LOCKED_OUT,
            LockState(failures=failures, locked_until=until),
            audit=f"mailbox locked after {failures} wrong PINs until {until.isoformat()}",
        )
    return Attempt(Outcome.WRONG_PIN, replace(state, failures=failures))
