"""Playback stream links: signed, expiring, bound to one recording of one tenant."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from ringwise_recording.archive.envelope import PlatformKey
from ringwise_recording.recordings.stream import StreamTokens

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TOKENS = StreamTokens(PlatformKey("p", os.urandom(32)))


def test_a_token_names_its_recording_until_it_expires() -> None:
    token = TOKENS.issue("acme", "rec-1", NOW + timedelta(minutes=5))
    assert TOKENS.check(token, NOW) == {
        "t": "acme",
        "r": "rec-1",
        "e": int((NOW + timedelta(minutes=5)).timestamp()),
    }
    assert TOKENS.check(token, NOW + timedelta(minutes=6)) is None


def test_forged_or_foreign_tokens_are_refused() -> None:
    token = TOKENS.issue("acme", "rec-1", NOW + timedelta(minutes=5))
    body, _, signature = token.partition(".")
    other = TOKENS.issue("evil", "rec-1", NOW + timedelta(minutes=5)).partition(".")[0]
    assert TOKENS.check(f"{other}.{signature}", NOW) is None  # claims swapped
    assert TOKENS.check(f"{body}.{signature[:-2]}", NOW) is None  # signature cut
    assert TOKENS.check("garbage", NOW) is None
    elsewhere = StreamTokens(PlatformKey("p", os.urandom(32)))
    assert elsewhere.check(token, NOW) is None  # another platform key
