"""The minimal state of the calls this routing instance handles, kept in Redis while they are
up, so that a new instance (after a restart or a crash) can finish them.

One key per call (`ringwise:routing:call:<call_id>`, JSON): the call record so far, the
caller's channel, the legs that may still ring and the bridge once answered. A call is saved
when it is routed, when its legs are created and when it is bridged, and forgotten when it
ends. The keys expire after a day as a backstop (a call that long is adopted again anyway at
every reconcile, which refreshes nothing: it is simply ended then).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from ringwise.events.v1 import call_pb2

from ringwise_routing.calls.cdr import CallRecord

KEY_PREFIX = "ringwise:routing:call:"
TTL_S = 24 * 3600


@dataclass(frozen=True)
class StoredCall:
    record: CallRecord
    caller_id: str
    legs: tuple[str, ...]  # callee channels that may still be up
    bridge_id: str | None  # set once answered: the conversation

    @property
    def channels(self) -> tuple[str, ...]:
        return (self.caller_id, *self.legs)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def encode(record: CallRecord, caller_id: str, legs: list[str], bridge_id: str | None) -> str:
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
    )


class CallStateStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def save(
        self, record: CallRecord, caller_id: str, legs: list[str], bridge_id: str | None
    ) -> None:
        await self._redis.set(
            KEY_PREFIX + record.call_id, encode(record, caller_id, legs, bridge_id), ex=TTL_S
        )

    async def forget(self, call_id: str) -> None:
        await self._redis.delete(KEY_PREFIX + call_id)

    async def all(self) -> list[StoredCall]:
        found: list[StoredCall] = []
        async for key in self._redis.scan_iter(match=KEY_PREFIX + "*", count=500):
            raw = await self._redis.get(key)
            if raw is not None:
                found.append(decode(raw))
        return found
