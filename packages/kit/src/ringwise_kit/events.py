"""Building and reading the call events of proto/ringwise/events/v1."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeAlias

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg
from ringwise.events.v1 import call_pb2, recording_pb2

from ringwise_kit import subjects
from ringwise_kit.bus import PermanentError, message_type

CallEvent: TypeAlias = (
    call_pb2.CallStarted
    | call_pb2.CallRouted
    | call_pb2.CallAnswered
    | call_pb2.CallEnded
    | call_pb2.CallDiverted
    | call_pb2.CallMissed
)

# What routing's outbox publishes: the call's events, and the recordings it made.
OutboxEvent: TypeAlias = CallEvent | recording_pb2.RecordingFinished

EVENT_TYPES: dict[str, type[CallEvent]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        call_pb2.CallStarted,
        call_pb2.CallRouted,
        call_pb2.CallAnswered,
        call_pb2.CallEnded,
        call_pb2.CallDiverted,
        call_pb2.CallMissed,
    )
}

# The subject suffix of each event type (ringwise.v1.call.<tenant>.<suffix>).
EVENT_SUFFIX: dict[type[Message], str] = {
    call_pb2.CallStarted: subjects.CALL_STARTED,
    call_pb2.CallRouted: subjects.CALL_ROUTED,
    call_pb2.CallAnswered: subjects.CALL_ANSWERED,
    call_pb2.CallEnded: subjects.CALL_ENDED,
    call_pb2.CallDiverted: subjects.CALL_DIVERTED,
    call_pb2.CallMissed: subjects.CALL_MISSED,
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(moment: datetime) -> Timestamp:
    """What Timestamp.FromDatetime(moment.astimezone(UTC)) gives, in integer arithmetic:
    FromDatetime is pure Python, and every call event carries a timestamp or two."""
    since = moment.astimezone(UTC) - _EPOCH
    return Timestamp(seconds=since.days * 86400 + since.seconds, nanos=since.microseconds * 1000)


def from_timestamp(stamp: Timestamp) -> datetime | None:
    """None for an unset timestamp (e.g. answered_at of an unanswered call)."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def event_header(
    tenant_id: str, call_id: str, kind: str, occurred_at: datetime
) -> call_pb2.EventHeader:
    """event_id is derived from the call and the event kind: each kind happens once per call,
    so a re-publish after a crash de-duplicates in JetStream and at every consumer."""
    return call_pb2.EventHeader(
        event_id=f"{call_id}:{kind}",
        tenant_id=tenant_id,
        call_id=call_id,
        occurred_at=to_timestamp(occurred_at),
    )


def subject_for(event: OutboxEvent) -> str:
    if isinstance(event, recording_pb2.RecordingFinished):
        return subjects.recording_event(event.header.tenant_id, subjects.RECORDING_FINISHED)
    return subjects.call_event(event.header.tenant_id, EVENT_SUFFIX[type(event)])


def decode(msg: Msg) -> CallEvent:
    """Decode a call event by its type header; unknown types can never succeed."""
    kind = message_type(msg)
    model = EVENT_TYPES.get(kind)
    if model is None:
        raise PermanentError(f"unknown event type {kind!r} on {msg.subject}")
    event = model()
    event.ParseFromString(msg.data)
    return event
