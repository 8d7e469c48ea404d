"""Recording service: archives finished recordings into the WORM S3 bucket and serves them.

- archive/: RecordingFinished -> ARI stored recording -> encrypted, Object-Locked S3 object
- recordings/: metadata, search/download/legal hold over the gateway's API, audit chain
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from ringwise.events.v1 import recording_pb2
from ringwise_kit import api, bus, service, subjects
from ringwise_kit.ari import AriInstances
from ringwise_kit.logs import get_logger
from ringwise_kit.ops import READINESS_KEY

from ringwise_recording.archive import consumer
from ringwise_recording.archive.archiver import Archiver
from ringwise_recording.archive.bucket import S3Settings, WormBucket
from ringwise_recording.archive.envelope import PlatformKey
from ringwise_recording.archive.jobs import Expiry, Verifier, every
from ringwise_recording.archive.keys import TenantKeys
from ringwise_recording.recordings import access
from ringwise_recording.recordings.audit import AuditLog
from ringwise_recording.recordings.http import RecordingsContext, build_router
from ringwise_recording.recordings.store import RecordingStore
from ringwise_recording.recordings.stream import StreamTokens, add_stream_route
from ringwise_recording.settings import RecordingSettings

log = get_logger(__name__)

STORE_KEY = web.AppKey("recording_store", RecordingStore)
BUCKET_KEY = web.AppKey("recording_bucket", WormBucket)
ARCHIVER_KEY = web.AppKey("archiver", Archiver)


def s3_settings(settings: RecordingSettings) -> S3Settings:
    return S3Settings(
        endpoint=settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        region=settings.s3_region,
        bucket=settings.recordings_bucket,
    )


def platform_key(settings: RecordingSettings) -> PlatformKey | None:
    if not settings.recording_platform_key.get_secret_value():
        return None
    return PlatformKey(settings.recording_platform_key_id, settings.platform_key_bytes())


def archive_ctx(settings: RecordingSettings) -> service.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = RecordingStore(app[service.MONGO_KEY], settings.recording_db)
        await store.ensure_indexes()
        bucket = WormBucket(s3_settings(settings))
        if settings.recordings_bucket_create:
            await bucket.create_worm()
        # Refuse to run against a bucket that would let recordings be shortened or deleted.
        await bucket.check_worm()
        # Each recording is fetched from the Asterisk (pod) that recorded it.
        asterisks = AriInstances(settings)
        archiver = Archiver(
            store,
            bucket,
            consumer.AriRecordings(asterisks),
            TenantKeys(store, platform_key(settings)),
            part_bytes=settings.recording_part_mb * 1024 * 1024,
            parts_in_flight=settings.recording_parts_in_flight,
            default_retention_days=settings.recording_default_retention_days,
        )
        app[STORE_KEY] = store
        app[BUCKET_KEY] = bucket
        app[ARCHIVER_KEY] = archiver
        archive_consumer = bus.DurableConsumer(
            app[service.JS_KEY],
            consumer.CONSUMER,
            batch_handler=consumer.batch_handler(archiver, app[service.JS_KEY]),
            batch=4,
        )
        await archive_consumer.start()
        app[READINESS_KEY].add("consumer:recording-archive", lambda: archive_consumer.connected)

        audit = AuditLog(app[service.MONGO_KEY], settings.recording_db)
        await audit.ensure_indexes()
        nc = app[service.NATS_KEY]
        key = platform_key(settings)

        async def policy_changed(tenant_id: str) -> None:
            change = recording_pb2.RecordingPolicyRequest(tenant_id=tenant_id)
            await nc.publish(subjects.RECORDING_POLICY_CHANGED, change.SerializeToString())

        router = build_router(
            RecordingsContext(
                store,
                audit,
                bucket,
                settings.recording_download_url_s,
                stream_tokens=StreamTokens(key) if key else None,
                stream_base_url=settings.recording_stream_base_url
                or f"http://{settings.http_host}:{settings.http_port}",
                policy_changed=policy_changed,
            )
        )
        api_sub = await api.serve_api(nc, "recording", router)

        async def policy_of(
            req: recording_pb2.RecordingPolicyRequest,
        ) -> recording_pb2.RecordingPolicy:
            tenant = await store.tenant_settings(req.tenant_id)
            return access.resolve_policy(tenant, req.user_id, req.team_id)

        policy_sub = await bus.serve(
            nc,
            subjects.RECORDING_POLICY,
            "recording",
            recording_pb2.RecordingPolicyRequest,
            policy_of,
        )
        verifier, expiry = Verifier(store, bucket), Expiry(store, bucket)
        jobs = [
            asyncio.create_task(
                every(
                    settings.recording_verify_interval_s,
                    lambda: verifier.run(settings.recording_verify_sample),
                    "verifier",
                )
            ),
            asyncio.create_task(every(settings.recording_expiry_interval_s, expiry.run, "expiry")),
        ]
        yield
        for job in jobs:
            job.cancel()
        for sub in (api_sub, policy_sub):
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await archive_consumer.stop()
        await asterisks.close()
        bucket.close()

    return ctx


def create_app(settings: RecordingSettings | None = None) -> web.Application:
    settings = settings or RecordingSettings()
    app = service.create_app(settings)
    app.cleanup_ctx.append(service.nats_ctx(settings, bus.RECORDINGS, bus.DEAD_LETTERS))
    app.cleanup_ctx.append(service.mongo_ctx(settings.mongo_url))
    app.cleanup_ctx.append(archive_ctx(settings))
    key = platform_key(settings)
    add_stream_route(
        app,
        tokens=lambda: StreamTokens(key) if key else None,
        store=lambda: app[STORE_KEY],
        bucket=lambda: app[BUCKET_KEY],
        platform_key=lambda: key,
    )
    return app


def main() -> None:
    settings = RecordingSettings()
    service.run(create_app(settings), settings)


if __name__ == "__main__":
    main()
