"""CDRs are correct to the second and complete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ringwise.events.v1 import call_pb2
from ringwise_kit.events import from_timestamp
from ringwise_routing.calls.cdr import CallRecord, billable, call_ended

T0 = datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("talk_ms", "seconds"), [(0, 0), (999, 0), (1000, 1), (3004, 3), (3999, 3), (61500, 61)]
)
def test_billable_seconds_truncate_like_asterisk_billsec(talk_ms: int, seconds: int) -> None:
    assert billable(T0, T0 + timedelta(milliseconds=talk_ms)) == (seconds, talk_ms)


def test_an_unanswered_call_bills_nothing() -> None:
    assert billable(None, T0 + timedelta(seconds=30)) == (0, 0)


def test_an_answered_call_gives_a_complete_cdr() -> None:
    record = CallRecord(
        call_id="c1",
        from_number="+441234",
        to_number="+15550100",
        started_at=T0,
        tenant_id="acme",
        user_id="alice",
        device_id="alice-desk",
        answered_at=T0 + timedelta(seconds=2),
        ended_at=T0 + timedelta(seconds=5, milliseconds=250),
        disposition=call_pb2.DISPOSITION_ANSWERED,
        hangup_cause=16,
        hangup_by="caller",
    )
    cdr = call_ended(record)
    assert cdr.header.event_id == "c1:ended"
    assert cdr.header.tenant_id == "acme"
    assert from_timestamp(cdr.header.occurred_at) == record.ended_at
    assert from_timestamp(cdr.started_at) == T0
    assert from_timestamp(cdr.answered_at) == T0 + timedelta(seconds=2)
    assert cdr.billable_seconds == 3
    assert cdr.billable_ms == 3250
    assert cdr.duration_ms == 5250
    assert cdr.direction == call_pb2.DIRECTION_INBOUND
    assert (cdr.user_id, cdr.device_id, cdr.hangup_by, cdr.hangup_cause) == (
        "alice",
        "alice-desk",
        "caller",
        16,
    )


def test_an_unanswered_cdr_has_no_answer_time() -> None:
    record = CallRecord("c2", "+1", "+2", T0, ended_at=T0 + timedelta(seconds=5))
    cdr = call_ended(record)
    assert not cdr.HasField("answered_at")
    assert from_timestamp(cdr.answered_at) is None
    assert cdr.billable_seconds == 0


def test_a_cdr_needs_an_end_time() -> None:
    with pytest.raises(ValueError, match="end time"):
        call_ended(CallRecord("c3", "+1", "+2", T0))
