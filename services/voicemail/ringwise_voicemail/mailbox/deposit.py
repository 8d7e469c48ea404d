"""Deposit rules (pure): the recording limits, silence trimming, and which recordings count
as messages."""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array
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


# Silence: a 20 ms frame whose RMS is below this (16-bit scale, about -50 dBFS).
SILENCE_RMS = 100.0
FRAME_S = 0.02
# Silence kept at each end, so a trimmed message does not start or stop abruptly.
KEEP_SILENCE_S = 0.5


def _loud(frame: array[int]) -> bool:
    if not frame:
        return False
    return math.sqrt(sum(s * s for s in frame) / len(frame)) >= SILENCE_RMS


def trim_silence(data: bytes, keep_s: float = KEEP_SILENCE_S) -> bytes:
    """Cut leading and trailing silence beyond keep_s (e.g. the 10 s of silence that ended a
    recording). Only 16-bit mono WAV is trimmed; anything else, or all-silence, is returned
    as it came. Trimming a trimmed recording changes nothing."""
    try:
        with wave.open(io.BytesIO(data)) as audio:
            params = audio.getparams()
            raw = audio.readframes(audio.getnframes())
    except (wave.Error, EOFError):
        return data
    if params.sampwidth != 2 or params.nchannels != 1 or not params.framerate:
        return data
    samples = array("h")
    samples.frombytes(raw)
    if sys.byteorder == "big":
        samples.byteswap()
    step = max(1, round(params.framerate * FRAME_S))
    frames = [samples[i : i + step] for i in range(0, len(samples), step)]
    loud = [i for i, frame in enumerate(frames) if _loud(frame)]
    if not loud:
        return data
    keep = round(keep_s / FRAME_S)
    first = max(0, loud[0] - keep)
    last = min(len(frames), loud[-1] + 1 + keep)
    if first == 0 and last == len(frames):
        return data
    kept = samples[first * step : last * step]
    if sys.byteorder == "big":
        kept.byteswap()
    out = io.BytesIO()
    with wave.open(out, "wb") as trimmed:
        trimmed.setnchannels(1)
        trimmed.setsampwidth(2)
        trimmed.setframerate(params.framerate)
        trimmed.writeframes(kept.tobytes())
    return out.getvalue()
