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

log = get_logger(__name__)

KEY_PREFIX = "ringwise:routing:call:"
TTL_S = 24 * 3600
# How long a noted change may wait for others to share its round trip to Redis: long enough
# that a call's route-time and answer-time saves, and other calls' changes, go together
# (each round trip costs routing about as much Python as a whole ARI event).
LINGER_S = 0.02


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
        # Calls whose key may exist in Redis (a forget of any other is a no-op).
        self._written: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None

    def save(
        self,
        record: CallRecord,
        caller_id: str,
        legs: list[str],
        bridge_id: str | None,
        asterisk_id: str = "",
    ) -> None:
        self._pending[record.call_id] = encode(record, caller_id, legs, bridge_id, asterisk_id)
        self._schedule()

    def forget(self, call_id: str) -> None:
        if call_id in self._written:
            self._pending[call_id] = None
            self._schedule()
        else:
            self._pending.pop(call_id, None)

    async def flush(self) -> None:
        """Send everything noted so far (shutdown, tests); the flusher's own round trip."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
        if self._pending:
            await self._write(self._take())

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()

    def _schedule(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="call-state-flush")

    async def _flush_soon(self) -> None:
        while self._pending:
            await asyncio.sleep(self._linger_s)
            await self._write(self._take())

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
