"""Waiting for a call's next ARI event: the one loop every call executor (inbound plans,
outbound and click-to-dial calls) runs its steps on.

A call's events arrive on its own queue, in order. A step waits for the event it needs; the
caller may hang up at any moment, and then the wait raises CallerHungUp, so each step only
handles its own outcomes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from datetime import datetime

from ringwise_kit.ari import AriEvent, ChannelDestroyed, ChannelHangupRequest, StasisEnd

HANGUP_EVENTS = (ChannelHangupRequest, StasisEnd, ChannelDestroyed)
CAUSE_NORMAL_CLEARING = 16


class CallerHungUp(Exception):
    def __init__(self, at: datetime, cause: int) -> None:
        super().__init__(f"caller hung up (cause {cause})")
        self.at = at
        self.cause = cause


def channel_of(event: AriEvent) -> str | None:
    channel = getattr(event, "channel", None)
    return channel.id if channel is not None else None


EventHook = Callable[[AriEvent], None]


class EventInbox:
    """One call's ARI events in arrival order, read by the call's own task.

    What asyncio.Queue plus asyncio.timeout do per wait, for the one reader a call has: a
    call waits about ten times, and the queue's getter bookkeeping and the timeout context
    were a fair share of routing's CPU per call. One reader at a time (a second is an error).
    """

    __slots__ = ("_events", "_waiter")

    def __init__(self) -> None:
        self._events: deque[AriEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, event: AriEvent) -> None:
        self._events.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._events

    def get_nowait(self) -> AriEvent:
        """The oldest event; IndexError when there is none."""
        return self._events.popleft()

    async def get(self) -> AriEvent:
        while not self._events:
            await self._wait(None)
        return self._events.popleft()

    async def wait(self, deadline: float) -> bool:
        """Until an event is here or the loop's clock reaches deadline; True: one is here."""
        if not self._events:
            await self._wait(deadline)
        return bool(self._events)

    async def _wait(self, deadline: float | None) -> None:
        if self._waiter is not None:
            raise RuntimeError("a call's events have one reader at a time")
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_at(deadline, _wake, waiter) if deadline is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def next_event(
    events: EventInbox,
    match: Callable[[AriEvent], bool],
    timeout_s: float,
    *,
    caller_id: str,
    seen: EventHook | None = None,
    unmatched: EventHook | None = None,
) -> AriEvent | None:
    """The next event `match` accepts; None on timeout. Raises CallerHungUp when the caller's
    channel goes. `seen` sees every event first (bookkeeping of the call's other legs);
    `unmatched` sees the events passed over (e.g. digits typed ahead of a prompt)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        if events.empty() and not await events.wait(deadline):
            return None
        event = events.get_nowait()
        if seen is not None:
            seen(event)
        if match(event):
            return event
        if unmatched is not None:
            unmatched(event)
        if isinstance(event, HANGUP_EVENTS) and channel_of(event) == caller_id:
            cause = getattr(event, "cause", 0) or CAUSE_NORMAL_CLEARING
            raise CallerHungUp(event.timestamp, cause)
