"""Idempotency-Key on POST: a retried request gets the first reply instead of a second effect.

The first request with a key claims it in Redis (SET NX) and stores its reply when done; a
retry with the same key and the same body gets that reply back (with Idempotent-Replayed:
true); the same key with another body is 422; a retry while the first is still running is
409. Keys are per caller, kept for settings.idempotency_ttl_s. A 5xx reply is not kept, so
the client can retry; after a 504 (the service did not answer in time, it may still act) the
claim stays "running" for IN_FLIGHT_TTL_S. The key is also forwarded to the service.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from ringwise.api.v1 import api_pb2
from ringwise_kit.api import ApiError

PREFIX = "gw:idem:"
# Longer than a forward can take (forward_timeout_s), short enough that a client retrying
# after a gateway crash is not kept waiting long.
IN_FLIGHT_TTL_S = 15


@dataclass(frozen=True)
class Claim:
    redis_key: str
    fingerprint: str


def fingerprint(operation_id: str, path: str, body: bytes) -> str:
    return hashlib.sha256(f"{operation_id}\n{path}\n".encode() + body).hexdigest()


class IdempotencyStore:
    def __init__(self, redis: aioredis.Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    async def begin(
        self, subject_id: str, key: str, print_: str
    ) -> tuple[Claim | None, api_pb2.ApiReply | None]:
        """Claim the key (→ claim) or return the stored reply of an earlier request."""
        redis_key = f"{PREFIX}{subject_id}:{hashlib.sha256(key.encode()).hexdigest()}"
        claimed = await self.redis.set(
            redis_key, json.dumps({"fp": print_, "state": "running"}), nx=True, ex=IN_FLIGHT_TTL_S
        )
        if claimed:
            return Claim(redis_key, print_), None
        raw = await self.redis.get(redis_key)
        if raw is None:  # expired between the two calls: claim again
            return await self.begin(subject_id, key, print_)
        stored: dict[str, Any] = json.loads(raw)
        if stored["fp"] != print_:
            raise ApiError(
                422,
                "Unprocessable Content",
                "this Idempotency-Key was used with a different request",
                errors=[
                    {"field": "header.Idempotency-Key", "message": "reused for another request"}
                ],
            )
        if stored["state"] == "running":
            raise ApiError(
                409,
                "Conflict",
                "a request with this Idempotency-Key is still in progress",
                headers={"Retry-After": "1"},
            )
        reply = api_pb2.ApiReply()
        reply.ParseFromString(bytes.fromhex(stored["reply"]))
        reply.headers["Idempotent-Replayed"] = "true"
        return None, reply

    async def finish(self, claim: Claim, reply: api_pb2.ApiReply) -> None:
        if reply.status == 504:
            # The owning service may still have done it: keep the claim "running" until it
            # lapses, so an immediate retry is refused (409) rather than done twice.
            return
        if reply.status >= 500:
            await self.redis.delete(claim.redis_key)
            return
        value = json.dumps(
            {"fp": claim.fingerprint, "state": "done", "reply": reply.SerializeToString().hex()}
        )
        await self.redis.set(claim.redis_key, value, ex=self.ttl_s)

    async def abandon(self, claim: Claim) -> None:
        await self.redis.delete(claim.redis_key)
