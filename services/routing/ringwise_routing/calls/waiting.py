"""Waiting for a call's next ARI event: the one loop every call executor (inbound plans,
outbound and click-to-dial calls) runs its steps on.

A call's events arrive on its own queue, in order. A step waits for the event it needs; the
caller may hang up at any moment, and then the wait raises CallerHungUp, so each step only
handles its own outcomes.
"""

from __future__ import annotations

import asyncio
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


async def next_event(
    events: asyncio.Queue[AriEvent],
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
        if not events.empty():  # already here: no timer to arm and cancel
            event = events.get_nowait()
        else:
            # asyncio.timeout, not wait_for: no extra task per event on the hot path.
            try:
                async with asyncio.timeout(remaining):
                    event = await events.get()
            except TimeoutError:
                return None
        if seen is not None:
            seen(event)
        if match(event):
            return event
        if unmatched is not None:
            unmatched(event)
        if isinstance(event, HANGUP_EVENTS) and channel_of(event) == caller_id:
            cause = getattr(event, "cause", 0) or CAUSE_NORMAL_CLEARING
            raise CallerHungUp(event.timestamp, cause)
