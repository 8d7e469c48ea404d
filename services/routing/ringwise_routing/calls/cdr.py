"""The call detail record: pure construction of CallEnded from what happened."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ringwise.events.v1 import call_pb2
from ringwise_kit.events import event_header, to_timestamp
from ringwise_kit.subjects import CALL_ENDED


@dataclass
class CallRecord:
    """What the executor learnt about one call; turned into the CDR when it ends."""

    call_id: str
    from_number: str
    to_number: str
    started_at: datetime
    tenant_id: str = ""
    user_id: str = ""
    device_id: str = ""
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    disposition: call_pb2.Disposition.ValueType = call_pb2.DISPOSITION_UNSPECIFIED
    hangup_cause: int = 0
    hangup_by: str = ""
    direction: call_pb2.Direction.ValueType = call_pb2.DIRECTION_INBOUND


def span_ms(start: datetime, end: datetime) -> int:
    return max(0, round((end - start).total_seconds() * 1000))


def billable(answered_at: datetime | None, ended_at: datetime) -> tuple[int, int]:
    """(whole seconds, milliseconds) from answer to end; seconds truncate like Asterisk's
    billsec, so a 3.4 s call bills 3 s here and rating applies its own increments."""
    if answered_at is None:
        return 0, 0
    ms = span_ms(answered_at, ended_at)
    return ms // 1000, ms


def call_ended(record: CallRecord) -> call_pb2.CallEnded:
    if record.ended_at is None:
        raise ValueError("a CDR needs the end time")
    seconds, ms = billable(record.answered_at, record.ended_at)
    event = call_pb2.CallEnded(
        header=event_header(record.tenant_id, record.call_id, CALL_ENDED, record.ended_at),
        direction=record.direction,
        from_number=record.from_number,
        to_number=record.to_number,
        user_id=record.user_id,
        device_id=record.device_id,
        started_at=to_timestamp(record.started_at),
        ended_at=to_timestamp(record.ended_at),
        billable_seconds=seconds,
        billable_ms=ms,
        duration_ms=span_ms(record.started_at, record.ended_at),
        disposition=record.disposition,
        hangup_cause=record.hangup_cause,
        hangup_by=record.hangup_by,
    )
    if record.answered_at is not None:
        event.answered_at.CopyFrom(to_timestamp(record.answered_at))
    return event
