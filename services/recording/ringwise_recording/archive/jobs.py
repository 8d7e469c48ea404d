"""Background jobs over the archive: the verifier and the expiry job.

- Verifier: re-reads a random sample of archived objects in full and checks that the bytes
  still hash to the SHA-256 recorded at upload, and that each version is still locked in
  COMPLIANCE mode until at least its recorded retain-until. Findings go on the recording's
  document (last_verified_at, integrity) and into the log as errors.
- Expiry: once a recording's retain-until has passed and no legal hold is set, its object
  version is deleted (the S3 server allows it only then) and its metadata removed. A
  recording whose object the server still refuses to delete keeps its metadata.

Both take a clock, so tests drive time instead of waiting years.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from ringwise_kit.logs import get_logger

from ringwise_recording.archive.bucket import LOCK_MODE, WormBucket, error_code
from ringwise_recording.recordings.store import Doc, RecordingStore

log = get_logger(__name__)

VERIFIED = Counter("ringwise_recording_verified_total", "Verifier checks", ["outcome"])
EXPIRED = Counter("ringwise_recording_expired_total", "Expiry job results", ["outcome"])
Clock = Callable[[], datetime]


@dataclass
class VerifyReport:
    checked: int = 0
    failures: dict[str, str] = field(default_factory=dict)


@dataclass
class ExpiryReport:
    removed: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


class Verifier:
    def __init__(
        self, store: RecordingStore, bucket: WormBucket, clock: Clock = lambda: datetime.now(UTC)
    ) -> None:
        self._store = store
        self._bucket = bucket
        self._clock = clock

    async def check(self, doc: Doc) -> str:
        """'' when the object is intact and locked; otherwise what is wrong."""
        try:
            state = await self._bucket.state(doc["object_key"], doc["version_id"])
        except Exception as exc:
            return f"cannot read the object: {error_code(exc) or exc!r}"
        problems = []
        if state.lock_mode != LOCK_MODE:
            problems.append(f"lock mode is {state.lock_mode or 'none'}")
        until = state.retain_until
        if until is None or until < doc["retain_until"] - timedelta(seconds=1):
            problems.append(f"retain-until {until} is before {doc['retain_until']}")
        digest = hashlib.sha256()
        size = 0
        async for chunk in self._bucket.stream(doc["object_key"], doc["version_id"]):
            digest.update(chunk)
            size += len(chunk)
        if size != doc["ciphertext_size"] or digest.hexdigest() != doc["ciphertext_sha256"]:
            problems.append("content does not match the SHA-256 recorded at upload")
        return "; ".join(problems)

    async def run(self, sample: int) -> VerifyReport:
        report = VerifyReport()
        for doc in await self._store.sample_archived(sample):
            problem = await self.check(doc)
            report.checked += 1
            await self._store.update(
                doc["_id"],
                {"last_verified_at": self._clock(), "integrity": problem or "ok"},
            )
            VERIFIED.labels("failed" if problem else "ok").inc()
            if problem:
                report.failures[doc["_id"]] = problem
                log.error("recording_integrity_failed", recording_id=doc["_id"], problem=problem)
        return report


class Expiry:
    def __init__(
        self, store: RecordingStore, bucket: WormBucket, clock: Clock = lambda: datetime.now(UTC)
    ) -> None:
        self._store = store
        self._bucket = bucket
        self._clock = clock

    async def run(self) -> ExpiryReport:
        report = ExpiryReport()
        for doc in await self._store.expired(self._clock()):
            try:
                await self._bucket.delete_version(doc["object_key"], doc["version_id"])
            except Exception as exc:
                code = error_code(exc)
                if code not in ("NoSuchVersion", "NoSuchKey"):
                    # Still locked or held on the server (its clock decides): keep metadata.
                    report.refused[doc["_id"]] = code or repr(exc)
                    EXPIRED.labels("refused").inc()
                    continue
            await self._store.delete(doc["_id"])
            report.removed.append(doc["_id"])
            EXPIRED.labels("removed").inc()
            log.info("recording_expired", recording_id=doc["_id"], tenant_id=doc["tenant_id"])
        return report


async def every(interval_s: float, job: Callable[[], Any], name: str) -> None:
    """Run job every interval_s until cancelled; a failed run is logged, not fatal."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await job()
        except Exception:
            log.exception("recording_job_failed", job=name)
