"""Billing periods are calendar months in UTC. Pure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    if start.month == 12:
        return datetime(start.year + 1, 1, 1, tzinfo=UTC)
    return datetime(start.year, start.month + 1, 1, tzinfo=UTC)


def period_key(start: datetime) -> str:
    return f"{start.year:04d}-{start.month:02d}"


def due_periods(starts_at: datetime, ends_at: datetime | None, now: datetime) -> Iterator[datetime]:
    """The months a subscription owes by `now`: each month from the one it started in to the
    current one, unless it ended before that month began. Charged in advance, in full (no
    pro-rating): a service used on any day of a month pays that month."""
    if starts_at > now:
        return
    period = month_start(starts_at)
    last = month_start(now)
    while period <= last:
        if ends_at is not None and ends_at <= period:
            return
        yield period
        period = next_month(period)
