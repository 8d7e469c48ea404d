"""ARI event parsing: typed where we use them, tolerant of what we don't know."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from ringwise_kit.ari import AriEvent, Dial, StasisStart, parse_event, parse_event_json

CHANNEL = {
    "id": "1732536000.17",
    "name": "PJSIP/pstn-00000003",
    "state": "Ring",
    "caller": {"name": "", "number": "+441234567"},
    "connected": {"name": "", "number": ""},
    "accountcode": "",
    "dialplan": {
        "context": "from-pstn",
        "exten": "+15550100",
        "priority": 1,
        "app_name": "Stasis",
        "app_data": "ringwise,inbound",
    },
    "creationtime": "2026-11-25T12:00:00.120+0000",
    "language": "en",
    "something_new": {"x": 1},
}


def test_stasis_start_is_typed() -> None:
    event = parse_event(
        {
            "type": "StasisStart",
            "timestamp": "2026-11-25T12:00:00.125+0000",
            "args": ["inbound"],
            "channel": CHANNEL,
            "asterisk_id": "02:42:ac:11:00:02",
            "application": "ringwise",
        }
    )
    assert isinstance(event, StasisStart)
    assert event.args == ["inbound"]
    assert event.channel.dialplan.exten == "+15550100"
    assert event.channel.caller.number == "+441234567"
    assert event.channel.creationtime == datetime(2026, 11, 25, 12, 0, 0, 120000, tzinfo=UTC)
    assert event.timestamp == datetime(2026, 11, 25, 12, 0, 0, 125000, tzinfo=UTC)


def test_dial_events_carry_the_status_of_the_peer() -> None:
    event = parse_event(
        {
            "type": "Dial",
            "timestamp": "2026-11-25T12:00:03.000+0000",
            "dialstatus": "BUSY",
            "peer": {**CHANNEL, "id": "call-1"},
        }
    )
    assert isinstance(event, Dial)
    assert event.dialstatus == "BUSY"
    assert event.peer.id == "call-1"
    assert event.caller is None


def test_unknown_event_types_parse_as_the_base_event() -> None:
    event = parse_event(
        {"type": "DeviceStateChanged", "timestamp": "2026-11-25T12:00:00.000+0000", "x": 1}
    )
    assert type(event) is AriEvent
    assert event.type == "DeviceStateChanged"


FRAMES: list[dict[str, Any]] = [
    {
        "type": "StasisStart",
        "timestamp": "2026-11-25T12:00:00.125+0000",
        "args": ["inbound"],
        "channel": CHANNEL,
        "asterisk_id": "02:42:ac:11:00:02",
        "application": "ringwise",
    },
    {"type": "Dial", "timestamp": "2026-11-25T12:00:03.000+0000", "peer": CHANNEL},
    {
        "type": "ChannelDestroyed",
        "timestamp": "2026-11-25T12:00:09.5-0130",
        "cause": 16,
        "channel": CHANNEL,
    },
    {"type": "DeviceStateChanged", "timestamp": "2026-11-25T12:00:00.000+0000", "x": 1},
]


@pytest.mark.parametrize("frame", FRAMES, ids=[str(f["type"]) for f in FRAMES])
def test_a_frame_parses_from_its_text_exactly_as_from_its_dict(frame: dict[str, Any]) -> None:
    from_text = parse_event_json(json.dumps(frame))
    assert type(from_text) is type(parse_event(frame))
    assert from_text == parse_event(frame)


def test_a_known_event_with_a_bad_field_is_refused_not_taken_for_an_unknown_one() -> None:
    with pytest.raises(ValidationError):
        parse_event_json(json.dumps({"type": "Dial", "timestamp": "yesterday", "peer": CHANNEL}))
    with pytest.raises(ValidationError):
        parse_event_json(json.dumps({"type": "StasisStart", "timestamp": FRAMES[0]["timestamp"]}))
