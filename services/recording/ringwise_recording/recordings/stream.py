"""Decrypting playback stream for platform-key recordings: GET /v1/recording-streams/{token}.

createRecordingDownload (purpose "playback", platform mode) hands out a short-lived signed
token, like S3's presigned URLs: the token itself is the authorisation (the access check and
the audit entry happen when it is issued). The service streams the object from S3 through
the envelope's decryption, chunk by chunk; every chunk is authenticated before it is sent,
and a recording failing its final check (length, SHA-256) ends the response early instead of
completing it, so a client never receives a whole, unauthenticated file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from ringwise_kit.logs import get_logger
from ringwise_kit.problems import problem

from ringwise_recording.archive.bucket import WormBucket
from ringwise_recording.archive.envelope import EnvelopeError, PlatformKey, open_stream
from ringwise_recording.recordings.store import RecordingStore

log = get_logger(__name__)

PATH = "/v1/recording-streams/{token}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    """HMAC-signed, expiring tokens naming one recording of one tenant."""

    def __init__(self, platform_key: PlatformKey) -> None:
        # A key of its own, derived from the platform key (never the key that wraps data keys).
        self._key = hmac.new(
            platform_key.key, b"ringwise recording stream tokens", "sha256"
        ).digest()

    def issue(self, tenant_id: str, recording_id: str, expires: datetime) -> str:
        claims = {"t": tenant_id, "r": recording_id, "e": int(expires.timestamp())}
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{_b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())}"

    def check(self, token: str, now: datetime) -> dict[str, Any] | None:
        """The claims of a valid, unexpired token; None otherwise."""
        body, _, signature = token.partition(".")
        try:
            expected = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(signature)):
                return None
            claims: dict[str, Any] = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            return None
        if int(claims.get("e", 0)) < now.timestamp():
            return None
        return claims


def add_stream_route(
    app: web.Application,
    tokens: Callable[[], StreamTokens | None],
    store: Callable[[], RecordingStore],
    bucket: Callable[[], WormBucket],
    platform_key: Callable[[], PlatformKey | None],
) -> None:
    async def stream_recording(request: web.Request) -> web.StreamResponse:
        signer, key = tokens(), platform_key()
        if signer is None or key is None:
            return problem(404, "Not Found", "no such stream")
        claims = signer.check(request.match_info["token"], datetime.now(UTC))
        if claims is None:
            return problem(403, "Forbidden", "the stream link is invalid or has expired")
        doc = await store().get_in_tenant(claims["t"], claims["r"])
        if doc is None or doc.get("state") != "archived" or doc.get("key_mode") != "platform":
            return problem(404, "Not Found", "no such recording")
        response = web.StreamResponse(
            headers={
                "Content-Type": "audio/wav",
                "Content-Disposition": f'inline; filename="{doc["_id"]}.wav"',
                "Cache-Control": "no-store",
                "X-Content-SHA256": doc["sha256"],
            }
        )
        response.content_length = int(doc["size"])
        await response.prepare(request)
        try:
            async for chunk in open_stream(
                bucket().stream(doc["object_key"], doc["version_id"]), key
            ):
                await response.write(chunk)
        except EnvelopeError as exc:
            log.error("recording_stream_failed", recording_id=doc["_id"], error=str(exc))
            # Cut the connection: the client sees a short body, never a "complete" file.
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response

    app.router.add_get(PATH, stream_recording)
