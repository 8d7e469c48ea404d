"""The WORM bucket: boto3 (in worker threads) against any S3 with Object Lock.

The service refuses to start unless the bucket is versioned and its Object Lock default is
COMPLIANCE: a bucket that would let anyone shorten or delete a recording is a configuration
error, not something to work around.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

SSE = "AES256"
LOCK_MODE = "COMPLIANCE"


class BucketNotCompliant(Exception):
    """The bucket is not a WORM bucket (versioning + Object Lock COMPLIANCE default)."""


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


@dataclass(frozen=True)
class ObjectState:
    version_id: str
    size: int
    etag: str
    lock_mode: str
    retain_until: datetime | None
    legal_hold: bool
    sse: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class S3Settings:
    endpoint: str
    access_key: str
    secret_key: str
    region: str
    bucket: str


def multipart_etag(part_md5s: list[bytes]) -> str:
    # S3's (and SeaweedFS's) multipart ETag; used to check the completed object is made of
    # exactly the parts the server acknowledged, in order.
    """The ETag S3 gives a multipart object: md5 of the parts' md5s, then -<parts>."""
    return f'"{hashlib.md5(b"".join(part_md5s)).hexdigest()}-{len(part_md5s)}"'


class WormBucket:
    def __init__(self, settings: S3Settings, *, max_pool: int = 16) -> None:
        self.name = settings.bucket
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=settings.endpoint or None,
            aws_access_key_id=settings.access_key or None,
            aws_secret_access_key=settings.secret_key or None,
            region_name=settings.region,
            config=Config(
                s3={"addressing_style": "path"},
                max_pool_connections=max_pool,
                retries={"max_attempts": 3, "mode": "standard"},
                # Parts are protected by the signed payload hash; no extra CRC32 pass.
                request_checksum_calculation="when_required",
                connect_timeout=5,
                read_timeout=60,
            ),
        )

    @property
    def client(self) -> Any:
        return self._client

    def close(self) -> None:
        self._client.close()

    async def _run(self, method: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self._client, method), **kwargs)

    # -- the bucket ---------------------------------------------------------------------------

    async def check_worm(self) -> None:
        """Raise BucketNotCompliant unless versioning is on and the Object Lock default
        retention is COMPLIANCE."""
        try:
            versioning = await self._run("get_bucket_versioning", Bucket=self.name)
            lock = await self._run("get_object_lock_configuration", Bucket=self.name)
        except ClientError as exc:
            raise BucketNotCompliant(f"bucket {self.name}: {error_code(exc) or exc}") from exc
        if versioning.get("Status") != "Enabled":
            raise BucketNotCompliant(f"bucket {self.name} is not versioned")
        config = lock.get("ObjectLockConfiguration", {})
        mode = config.get("Rule", {}).get("DefaultRetention", {}).get("Mode")
        if config.get("ObjectLockEnabled") != "Enabled" or mode != LOCK_MODE:
            raise BucketNotCompliant(
                f"bucket {self.name}: Object Lock default retention is {mode or 'unset'}, "
                f"not {LOCK_MODE}"
            )

    async def create_worm(self, default_days: int = 1) -> None:
        """Create the bucket as a WORM bucket (dev platform and tests; production buckets are
        provisioned by infrastructure code, never by the service)."""
        try:
            await self._run("create_bucket", Bucket=self.name, ObjectLockEnabledForBucket=True)
        except ClientError as exc:
            if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        await self._run(
            "put_object_lock_configuration",
            Bucket=self.name,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": LOCK_MODE, "Days": default_days}},
            },
        )

    # -- multipart upload ---------------------------------------------------------------------

    async def start_upload(self, key: str, retain_until: datetime, metadata: dict[str, str]) -> str:
        reply = await self._run(
            "create_multipart_upload",
            Bucket=self.name,
            Key=key,
            ServerSideEncryption=SSE,
            ObjectLockMode=LOCK_MODE,
            ObjectLockRetainUntilDate=retain_until,
            ContentType="application/vnd.ringwise.recording",
            Metadata=metadata,
        )
        return str(reply["UploadId"])

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: bytes | bytearray
    ) -> str:
        # Integrity in transit: SigV4 signs each part's SHA-256 (x-amz-content-sha256), which
        # the server checks; an MD5 on top would only cost another pass over the bytes.
        reply = await self._run(
            "upload_part",
            Bucket=self.name,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
        )
        return str(reply["ETag"])

    async def complete_upload(self, key: str, upload_id: str, etags: list[str]) -> str:
        parts = [{"PartNumber": i + 1, "ETag": etag} for i, etag in enumerate(etags)]
        reply = await self._run(
            "complete_multipart_upload",
            Bucket=self.name,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
        return str(reply.get("VersionId", ""))

    async def abort_uploads(self, key: str) -> int:
        """Abort every unfinished multipart upload of this key (leftovers of a crash)."""
        listing = await self._run("list_multipart_uploads", Bucket=self.name, Prefix=key)
        aborted = 0
        for upload in listing.get("Uploads", []):
            if upload["Key"] != key:
                continue
            try:
                await self._run(
                    "abort_multipart_upload", Bucket=self.name, Key=key, UploadId=upload["UploadId"]
                )
                aborted += 1
            except ClientError as exc:
                if error_code(exc) != "NoSuchUpload":
                    raise
        return aborted

    # -- objects ------------------------------------------------------------------------------

    async def versions(self, key: str) -> list[dict[str, Any]]:
        listing = await self._run("list_object_versions", Bucket=self.name, Prefix=key)
        return [v for v in listing.get("Versions", []) if v["Key"] == key]

    async def state(self, key: str, version_id: str) -> ObjectState:
        head = await self._run("head_object", Bucket=self.name, Key=key, VersionId=version_id)
        return ObjectState(
            version_id=str(head.get("VersionId", version_id)),
            size=int(head["ContentLength"]),
            etag=str(head.get("ETag", "")),
            lock_mode=str(head.get("ObjectLockMode", "")),
            retain_until=head.get("ObjectLockRetainUntilDate"),
            legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
            sse=str(head.get("ServerSideEncryption", "")),
            metadata=dict(head.get("Metadata", {})),
        )

    async def stream(
        self, key: str, version_id: str, chunk_bytes: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        reply = await self._run("get_object", Bucket=self.name, Key=key, VersionId=version_id)
        body = reply["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, chunk_bytes):
                yield chunk
        finally:
            body.close()

    async def set_legal_hold(self, key: str, version_id: str, on: bool) -> None:
        await self._run(
            "put_object_legal_hold",
            Bucket=self.name,
            Key=key,
            VersionId=version_id,
            LegalHold={"Status": "ON" if on else "OFF"},
        )

    async def delete_version(self, key: str, version_id: str) -> None:
        """Delete one version; S3 refuses (AccessDenied) while it is locked or held."""
        await self._run("delete_object", Bucket=self.name, Key=key, VersionId=version_id)

    async def presign(self, key: str, version_id: str, expires_s: int) -> str:
        return str(
            await self._run(
                "generate_presigned_url",
                ClientMethod="get_object",
                Params={"Bucket": self.name, "Key": key, "VersionId": version_id},
                ExpiresIn=expires_s,
            )
        )
