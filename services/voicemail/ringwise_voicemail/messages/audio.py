"""Voicemail audio in S3, one prefix per tenant: <tenant>/voicemail/<user>/<message>.wav.

boto3 is synchronous: each call runs in a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import io
import wave
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ringwise_voicemail.settings import VoicemailSettings


def message_key(tenant_id: str, user_id: str, message_id: str, fmt: str = "wav") -> str:
    return f"{tenant_id}/voicemail/{user_id}/messages/{message_id}.{fmt}"


def greeting_key(tenant_id: str, user_id: str, kind: str, version: str, fmt: str = "wav") -> str:
    return f"{tenant_id}/voicemail/{user_id}/greetings/{kind}-{version}.{fmt}"


def wav_duration_s(data: bytes) -> float | None:
    """Length of a WAV recording from its header; None if it is not a readable WAV."""
    try:
        with wave.open(io.BytesIO(data)) as audio:
            rate = audio.getframerate()
            return audio.getnframes() / rate if rate else None
    except (wave.Error, EOFError):
        return None


class AudioStore:
    def __init__(self, settings: VoicemailSettings) -> None:
        self.bucket = settings.s3_bucket
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.s3_secret_key.get_secret_value(),
            region_name=settings.s3_region,
            config=Config(
                connect_timeout=2,
                read_timeout=10,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    async def ensure_bucket(self) -> None:
        def ensure() -> None:
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError:
                try:
                    self._client.create_bucket(Bucket=self.bucket)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        await asyncio.to_thread(ensure)

    async def put(self, key: str, data: bytes, content_type: str = "audio/wav") -> None:
        await asyncio.to_thread(
            self._client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
        )

    async def get(self, key: str) -> bytes:
        def get() -> bytes:
            body: bytes = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            return body

        return await asyncio.to_thread(get)

    async def exists(self, key: str) -> bool:
        def head() -> bool:
            try:
                self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
            return True

        return await asyncio.to_thread(head)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._client.delete_object, Bucket=self.bucket, Key=key)

    def url(self, key: str, ttl_s: int) -> str:
        """A short-lived GET link (presigned; signing is local, no request)."""
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_s
        )
        return url

    def close(self) -> None:
        self._client.close()


def concat_wavs(first: bytes, second: bytes) -> bytes:
    """One WAV of two with the same format (Asterisk records 8 kHz 16-bit mono)."""
    with wave.open(io.BytesIO(first)) as a, wave.open(io.BytesIO(second)) as b:
        if a.getparams()[:3] != b.getparams()[:3]:
            raise ValueError(f"different audio formats: {a.getparams()} and {b.getparams()}")
        out = io.BytesIO()
        with wave.open(out, "wb") as joined:
            joined.setparams(a.getparams())
            joined.writeframes(a.readframes(a.getnframes()))
            joined.writeframes(b.readframes(b.getnframes()))
        return out.getvalue()
