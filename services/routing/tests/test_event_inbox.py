"""A call's event inbox and next_event: order, timeouts, the caller hanging up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from ringwise_kit.ari import Channel, ChannelDestroyed, ChannelDtmfReceived
from ringwise_routing.calls.waiting import CallerHungUp, EventInbox, next_event

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def digit(channel_id: str, key: str) -> ChannelDtmfReceived:
    return ChannelDtmfReceived(
        type="ChannelDtmfReceived",
        timestamp=NOW,
        digit=key,
        duration_ms=100,
        channel=Channel(id=channel_id),
    )


def destroyed(channel_id: str, cause: int = 16) -> ChannelDestroyed:
    return ChannelDestroyed(
        type="ChannelDestroyed", timestamp=NOW, cause=cause, channel=Channel(id=channel_id)
    )


async def test_events_come_out_in_arrival_order_and_unmatched_ones_are_passed_over() -> None:
    inbox = EventInbox()
    passed: list[str] = []
    for key in "123":
        inbox.put_nowait(digit("caller", key))
    event = await next_event(
        inbox,
        lambda e: isinstance(e, ChannelDtmfReceived) and e.digit == "3",
        1.0,
        caller_id="caller",
        unmatched=lambda e: passed.append(e.digit),  # type: ignore[attr-defined]
    )
    assert isinstance(event, ChannelDtmfReceived) and event.digit == "3"
    assert passed == ["1", "2"]
    assert inbox.empty()


async def test_a_wait_wakes_for_an_event_that_arrives_later() -> None:
    inbox = EventInbox()
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, inbox.put_nowait, digit("caller", "5"))
    started = loop.time()
    event = await next_event(inbox, lambda e: True, 5.0, caller_id="caller")
    assert isinstance(event, ChannelDtmfReceived) and event.digit == "5"
    assert loop.time() - started < 1.0


async def test_a_wait_without_a_matching_event_times_out_with_none() -> None:
    inbox = EventInbox()
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, inbox.put_nowait, digit("caller", "1"))
    started = loop.time()
    assert await next_event(inbox, lambda e: False, 0.1, caller_id="caller") is None
    assert 0.09 <= loop.time() - started < 1.0
    # The timed-out wait left nothing behind: a later wait works as before.
    inbox.put_nowait(digit("caller", "2"))
    assert await next_event(inbox, lambda e: True, 0.1, caller_id="caller") is not None


async def test_the_caller_going_raises_with_the_cause() -> None:
    inbox = EventInbox()
    inbox.put_nowait(destroyed("leg-1", cause=17))
    inbox.put_nowait(destroyed("caller", cause=21))
    seen: list[str] = []
    with pytest.raises(CallerHungUp) as gone:
        await next_event(
            inbox,
            lambda e: False,
            1.0,
            caller_id="caller",
            seen=lambda e: seen.append(e.channel.id),  # type: ignore[attr-defined]
        )
    assert gone.value.cause == 21
    assert seen == ["leg-1", "caller"]


async def test_a_second_reader_at_the_same_time_is_refused() -> None:
    inbox = EventInbox()
    first = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await inbox.get()
    inbox.put_nowait(digit("caller", "9"))
    event = await asyncio.wait_for(first, 1.0)
    assert isinstance(event, ChannelDtmfReceived) and event.digit == "9"


async def test_a_cancelled_reader_leaves_the_inbox_usable() -> None:
    inbox = EventInbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    inbox.put_nowait(digit("caller", "4"))
    assert (await asyncio.wait_for(inbox.get(), 1.0)).digit == "4"  # type: ignore[attr-defined]
