"""The archive takes call recordings only: a voicemail deposit is voicemail's to keep."""

from __future__ import annotations

from typing import Any, cast

import pytest
from nats.aio.msg import Msg
from ringwise.events.v1 import recording_pb2
from ringwise_kit import bus, subjects
from ringwise_recording.archive.consumer import decode_finished


def finished_msg(asterisk_name: str) -> Msg:
    event = recording_pb2.RecordingFinished(recording_id=asterisk_name, asterisk_name=asterisk_name)
    return Msg(
        cast(Any, None),
        subject=subjects.recording_event("acme", subjects.RECORDING_FINISHED),
        data=event.SerializeToString(),
        headers={bus.TYPE_HEADER: recording_pb2.RecordingFinished.DESCRIPTOR.full_name},
    )


def test_a_call_recording_is_taken() -> None:
    name = f"{subjects.CALL_RECORDING_NAME_PREFIX}c1-caller"
    assert decode_finished(finished_msg(name)).asterisk_name == name


def test_a_voicemail_deposit_is_refused_for_good_so_it_is_never_fetched_or_deleted() -> None:
    name = f"{subjects.VOICEMAIL_RECORDING_NAME_PREFIX}acme-0123"
    with pytest.raises(bus.PermanentError, match="voicemail deposit"):
        decode_finished(finished_msg(name))
