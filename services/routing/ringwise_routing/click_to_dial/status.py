"""What GET .../calls/{call_id} shows: a click-to-dial call's status, one Redis key per call
(`ringwise:routing:click_to_dial:<tenant>:<call_id>`, JSON), written by the instance running
the call at each step and kept a day after its last change. Every instance answers the GET.

Statuses: `ringing_user` (the user's terminal rings), `connecting` (the user answered; the
target is being dialled or the extension handed over), `connected` (the target answered),
then one final status: `ended` (with the CDR's `disposition`), `internal` (an extension: the
internal call's own executor runs it from then on, under `internal_call_id`), `not answered`
(the user did not answer: nothing else rang), `failed` (the user's terminal could not be
rung).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

KEY_PREFIX = "ringwise:routing:click_to_dial:"
TTL_S = 24 * 3600

RINGING_USER = "ringing_user"
CONNECTING = "connecting"
CONNECTED = "connected"
ENDED = "ended"
INTERNAL = "internal"
NOT_ANSWERED = "not answered"
FAILED = "failed"
FINAL = frozenset({ENDED, INTERNAL, NOT_ANSWERED, FAILED})


def _key(tenant_id: str, call_id: str) -> str:
    return f"{KEY_PREFIX}{tenant_id}:{call_id}"


class CallStatusStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def create(
        self, tenant_id: str, user_id: str, call_id: str, to: str, terminal_id: str
    ) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        state = {
            "call_id": call_id,
            "tenant_id": tenant_id,
            "user_id": user_id,
            "to": to,
            "terminal_id": terminal_id,
            "status": RINGING_USER,
            "disposition": None,
            "created_at": now,
            "updated_at": now,
        }
        await self._redis.set(_key(tenant_id, call_id), json.dumps(state), ex=TTL_S)
        return state

    async def update(
        self,
        tenant_id: str,
        call_id: str,
        status: str,
        disposition: str | None = None,
        *,
        internal_call_id: str = "",
    ) -> None:
        key = _key(tenant_id, call_id)
        raw = await self._redis.get(key)
        if raw is None:
            return
        state = json.loads(raw)
        state["status"] = status
        if disposition is not None:
            state["disposition"] = disposition
        if internal_call_id:
            state["internal_call_id"] = internal_call_id
        state["updated_at"] = datetime.now(UTC).isoformat()
        await self._redis.set(key, json.dumps(state), ex=TTL_S)

    async def get(self, tenant_id: str, call_id: str) -> dict[str, Any] | None:
        raw = await self._redis.get(_key(tenant_id, call_id))
        if raw is None:
            return None
        state: dict[str, Any] = json.loads(raw)
        return state
