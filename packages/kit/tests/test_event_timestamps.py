"""Call events' timestamps: the kit's conversion is protobuf's own, to the nanosecond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st
from ringwise_kit.events import from_timestamp, to_timestamp

moments = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone.min]),
)


def protobufs_own(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


@given(moments)
def test_a_moment_becomes_the_timestamp_protobuf_makes(moment: datetime) -> None:
    assert to_timestamp(moment) == protobufs_own(moment)


# The epoch itself reads back as "unset" (None): proto3 cannot tell it from no timestamp.
@given(moments.filter(lambda moment: moment != datetime(1970, 1, 1, tzinfo=UTC)))
def test_a_moment_comes_back_unchanged(moment: datetime) -> None:
    assert from_timestamp(to_timestamp(moment)) == moment


def test_before_the_epoch_the_nanoseconds_stay_positive() -> None:
    stamp = to_timestamp(datetime(1969, 12, 31, 23, 59, 59, 250000, tzinfo=UTC))
    assert (stamp.seconds, stamp.nanos) == (-1, 250_000_000)
