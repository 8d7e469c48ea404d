"""Idempotency-Key on POST operations (docs/api.md): the same key and body within 24 h gives
the first reply again; the same key with another body is 422. Replies are kept in Mongo, so
a retry reaching another billing process, or one after a restart, is answered the same."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError
from ringwise_kit.api import ApiCall, ApiResult, Handler, field_error, to_reply

KEEP = timedelta(hours=24)


class IdempotentReplies:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self.replies: AsyncCollection[dict[str, Any]] = client[database].idempotency

    def wrap(self, operation: str, handler: Handler) -> Handler:
        async def idempotent(call: ApiCall) -> ApiResult:
            if not call.idempotency_key:
                return await handler(call)
            key = hashlib.sha256(
                f"{call.tenant_id}\0{operation}\0{call.idempotency_key}".encode()
            ).hexdigest()
            fingerprint = hashlib.sha256(
                repr((sorted(call.path_params.items()), call.body)).encode()
            ).hexdigest()
            now = datetime.now(UTC)
            kept = await self.replies.find_one({"_id": key, "created_at": {"$gt": now - KEEP}})
            if kept is not None:
                if kept["fingerprint"] != fingerprint:
                    raise field_error("Idempotency-Key", "this key was used with another request")
                return ApiResult(
                    status=kept["status"],
                    body=kept["body"],
                    content_type=kept["content_type"],
                    headers=kept["headers"],
                )
            result = await handler(call)
            if result.status < 500:
                reply = to_reply(result)
                doc = {
                    "_id": key,
                    "fingerprint": fingerprint,
                    "status": reply.status,
                    "body": reply.body,
                    "content_type": reply.content_type,
                    "headers": dict(reply.headers),
                    "created_at": now,
                }
                # An expired reply under the same key gives way to this one.
                await self.replies.delete_one({"_id": key, "created_at": {"$lte": now - KEEP}})
                # A concurrent retry may have stored its (equal) reply first.
                with contextlib.suppress(DuplicateKeyError):
                    await self.replies.insert_one(doc)
            return result

        return idempotent
