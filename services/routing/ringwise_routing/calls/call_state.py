"""The minimal state of the calls this routing instance handles, kept in Redis while they are
up, so that a new instance (after a restart or a crash) can finish them.

One key per call (`ringwise:routing:call:<call_id>`, JSON): the call record so far, the
caller's channel, the legs that may still ring and the bridge once answered. A call is saved
when it is routed, when its legs are created and when it is bridged, and forgotten when it
ends. The keys expire after a day as a backstop (a call that long is adopted again anyway at
every reconcile, which refreshes nothing: it is simply ended then).

Writes are behind the call, never in its way: save() and forget() only note the call's
latest state, and a flusher sends what was noted during a short linger (LINGER_S) in one
pipelined round trip for every call at once. A call saved and forgotten within one linger
never reaches Redis. The price: a crash within LINGER_S of a change leaves the state before
it (a call bridged in the last 20 ms is ended as still ringing instead of being adopted).

One change may not wait: before a call's first leg is dialled its state must be in Redis,
or a crash while phones ring would leave a call nobody can account for (no CDR at all). A
save with hurry=True ends the linger at once (what other calls noted goes along), and
written() waits for that round trip; the session starts it when it creates the legs and
awaits it just before dialling them, so the round trip overlaps the legs entering Stasis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from ringwise.events.v1 import call_pb2
from ringwise_kit.logs import get_logger

from ringwise_routing.calls.cdr import CallRecord
from ringwise_routing.calls.publisher import EventPublisher

log = get_logger(__name__)

KEY_PREFIX = "ringwise:routing:call:"
TTL_S = 24 * 3600
# How long a noted change may wait for others to share its round trip to Redis: long enough
# that a call's route-time and answer-time saves, and other calls' changes, go together
# (each round trip costs routing about as much Python as a whole ARI event).
LINGER_S = 0.02
# How long a call's first dial waits for its state and events to be stored: a Redis or NATS
# that slow is failing, and the call goes on without (as it would through an outage).
RECORDED_WAIT_S = 0.5


@dataclass(frozen=True)
class StoredCall:
    record: CallRecord
    caller_id: str
    legs: tuple[str, ...]  # callee channels that may still be up
    bridge_id: str | None  # set once answered: the conversation
    asterisk_id: str = ""  # the Asterisk (entity id) the call is on

    @property
    def channels(self) -> tuple[str, ...]:
        return (self.caller_id, *self.legs)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def encode(
    record: CallRecord,
    caller_id: str,
    legs: list[str],
    bridge_id: str | None,
    asterisk_id: str = "",
) -> str:
    return json.dumps(
        {
            "call_id": record.call_id,
            "from_number": record.from_number,
            "to_number": record.to_number,
            "started_at": _time(record.started_at),
            "tenant_id": record.tenant_id,
            "user_id": record.user_id,
            "device_id": record.device_id,
            "answered_at": _time(record.answered_at),
            "disposition": int(record.disposition),
            "direction": int(record.direction),
            "caller_id": caller_id,
            "legs": legs,
            "bridge_id": bridge_id,
            "asterisk_id": asterisk_id,
        }
    )


def decode(raw: str | bytes) -> StoredCall:
    data = json.loads(raw)
    started = _parse_time(data["started_at"])
    if started is None:
        raise ValueError("stored call without a start time")
    record = CallRecord(
        call_id=data["call_id"],
        from_number=data["from_number"],
        to_number=data["to_number"],
        started_at=started,
        tenant_id=data.get("tenant_id", ""),
        user_id=data.get("user_id", ""),
        device_id=data.get("device_id", ""),
        answered_at=_parse_time(data.get("answered_at")),
        disposition=call_pb2.Disposition.ValueType(data.get("disposition", 0)),
        direction=call_pb2.Direction.ValueType(data.get("direction", 1)),
    )
    return StoredCall(
        record=record,
        caller_id=data["caller_id"],
        legs=tuple(data.get("legs", ())),
        bridge_id=data.get("bridge_id") or None,
        asterisk_id=data.get("asterisk_id", ""),
    )


def on_this_asterisk(stored: StoredCall, asterisk_id: str) -> bool:
    """Every Asterisk pod has its own routing, all sharing Redis: an instance takes over only
    the calls of its own Asterisk (an unknown id on either side: a single-Asterisk setup)."""
    return not stored.asterisk_id or not asterisk_id or stored.asterisk_id == asterisk_id


class CallStateStore:
    """Write-behind store of the calls' state (see the module's docstring)."""

    def __init__(self, redis: aioredis.Redis, *, linger_s: float = LINGER_S) -> None:
        self._redis = redis
        self._linger_s = linger_s
        # call id -> its latest encoded state, or None: delete it.
        self._pending: dict[str, str | None] = {}
        # Resolved once what is pending now has been written (or failed): for written().
        self._pending_written: asyncio.Future[None] | None = None
        # Calls whose key may exist in Redis (a forget of any other is a no-op).
        self._written: set[str] = set()
        self._linger: asyncio.TimerHandle | None = None
        # One round trip at a time, so a call's changes reach Redis in order.
        self._writing: asyncio.Task[None] | None = None
        self._hurry = False

    def save(
        self,
        record: CallRecord,
        caller_id: str,
        legs: list[str],
        bridge_id: str | None,
        asterisk_id: str = "",
        *,
        hurry: bool = False,
    ) -> None:
        """Note the call's state; with hurry, send it (and all else noted) without lingering."""
        self._pending[record.call_id] = encode(record, caller_id, legs, bridge_id, asterisk_id)
        if hurry:
            self._hurry = True
        self._schedule()

    def forget(self, call_id: str) -> None:
        if call_id in self._written:
            self._pending[call_id] = None
            self._schedule()
        else:
            self._pending.pop(call_id, None)

    async def written(self) -> None:
        """Wait until everything noted so far has been sent (a failed write counts: it was
        logged, and the call goes on as after a crash just then)."""
        if self._pending:
            if self._pending_written is None:
                self._pending_written = asyncio.get_running_loop().create_future()
            waiter = self._pending_written
            self._hurry = True
            self._schedule()
            await asyncio.shield(waiter)
        elif self._writing is not None:
            await asyncio.shield(self._writing)

    async def flush(self) -> None:
        """Send everything noted so far (shutdown, tests)."""
        await self.written()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()

    def _schedule(self) -> None:
        if self._writing is not None:
            return  # the write in flight schedules the next when it ends
        if not self._pending:
            self._nothing_left_to_write()
            return
        if self._hurry:
            if self._linger is not None:
                self._linger.cancel()
            self._start_write()
        elif self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(self._linger_s, self._start_write)

    def _start_write(self) -> None:
        self._linger = None
        self._hurry = False
        if not self._pending:  # all forgotten before they were ever sent
            self._nothing_left_to_write()
            return
        batch = self._take()
        done, self._pending_written = self._pending_written, None
        self._writing = asyncio.create_task(self._write_batch(batch, done), name="call-state-write")

    async def _write_batch(
        self, batch: dict[str, str | None], done: asyncio.Future[None] | None
    ) -> None:
        try:
            await self._write(batch)
        finally:
            self._writing = None
            if done is not None and not done.done():
                done.set_result(None)
            self._schedule()

    def _nothing_left_to_write(self) -> None:
        self._hurry = False
        waiter, self._pending_written = self._pending_written, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _take(self) -> dict[str, str | None]:
        batch, self._pending = self._pending, {}
        # From now on the key may exist, so a forget() during the write still deletes it.
        self._written.update(call_id for call_id, state in batch.items() if state is not None)
        return batch

    async def _write(self, batch: dict[str, str | None]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for call_id, state in batch.items():
            if state is None:
                pipe.delete(KEY_PREFIX + call_id)
            else:
                pipe.set(KEY_PREFIX + call_id, state, ex=TTL_S)
        try:
            await pipe.execute()
        except Exception as exc:
            # Like a crash just then: the calls go on, a restart finds the older state.
            log.warning("call_state_not_saved", calls=len(batch), error=repr(exc))
            return
        self._written.difference_update(c for c, state in batch.items() if state is None)

    async def all(self) -> list[StoredCall]:
        found: list[StoredCall] = []
        async for key in self._redis.scan_iter(match=KEY_PREFIX + "*", count=500):
            raw = await self._redis.get(key)
            if raw is not None:
                found.append(decode(raw))
        # Their keys exist: forgetting them (adopted or ended calls) must delete them.
        self._written.update(stored.record.call_id for stored in found)
        return found


async def recorded_before_ringing(
    store: CallStateStore | None, publisher: EventPublisher, timeout_s: float = RECORDED_WAIT_S
) -> bool:
    """Wait until what a call noted so far (its state, its CallStarted / CallRouted) is
    stored, at most timeout_s each; the caller hurried both when it created its legs, so this
    usually returns at once. False (logged) when either was not stored in time."""
    stored = True
    if store is not None:
        try:
            async with asyncio.timeout(timeout_s):
                await store.written()
        except TimeoutError:
            stored = False
    published = await publisher.published(timeout_s)
    if not (stored and published):
        log.warning("call_not_recorded_before_ringing", state=stored, events=published)
    return stored and published
