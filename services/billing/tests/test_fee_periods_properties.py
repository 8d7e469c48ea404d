"""Properties of fee periods (hypothesis): each month owed once, none after the end."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from ringwise_billing.fees.periods import due_periods, month_start, next_month, period_key

moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)


@given(moments, st.one_of(st.none(), moments), moments)
def test_every_owed_month_once_in_order_from_the_start_until_the_end(
    starts_at: datetime, ends_at: datetime | None, now: datetime
) -> None:
    periods = list(due_periods(starts_at, ends_at, now))
    keys = [period_key(p) for p in periods]
    assert keys == sorted(set(keys))  # each month once, in order
    for earlier, later in itertools.pairwise(periods):
        assert later == next_month(earlier)  # no month skipped
    if periods:
        assert periods[0] == month_start(starts_at)
        assert periods[-1] <= now
        assert all(p.day == 1 and p.hour == 0 for p in periods)
        if ends_at is not None:
            assert periods[-1] < ends_at  # not a month that began after the end
    if starts_at <= now and (ends_at is None or ends_at > month_start(now)):
        assert periods and periods[-1] == month_start(now)  # the current month is owed


@given(moments, st.integers(0, 400))
def test_running_the_job_later_only_adds_months(starts_at: datetime, days: int) -> None:
    now = starts_at + timedelta(days=days)
    before = [period_key(p) for p in due_periods(starts_at, None, now)]
    after = [period_key(p) for p in due_periods(starts_at, None, now + timedelta(days=40))]
    assert after[: len(before)] == before
