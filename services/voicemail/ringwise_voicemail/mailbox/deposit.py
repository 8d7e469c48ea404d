"""Deposit rules (pure): the recording limits and which recordings count as messages."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_SECONDS = 180
DEFAULT_MIN_SECONDS = 2.0
# Silence that ends a recording on its own (Asterisk's maxSilenceSeconds).
DEFAULT_MAX_SILENCE_SECONDS = 10


@dataclass(frozen=True)
class DepositLimits:
    max_seconds: int = DEFAULT_MAX_SECONDS
    # Shorter recordings are hang-ups, not messages: dropped and not notified.
    min_seconds: float = DEFAULT_MIN_SECONDS
    max_silence_seconds: int = DEFAULT_MAX_SILENCE_SECONDS

    def __post_init__(self) -> None:
        if self.max_seconds < 5:
            raise ValueError("max_seconds must be at least 5")
        if not 0 <= self.min_seconds < self.max_seconds:
            raise ValueError("min_seconds must be between 0 and max_seconds")

    def keeps(self, duration_s: float) -> bool:
        return duration_s >= self.min_seconds
