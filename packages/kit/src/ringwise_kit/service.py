"""Service wiring shared by every Ringwise service: one aiohttp application per service.

The aiohttp app carries the ops routes (/metrics, /healthz, /readyz) and the service's own
routes; its resources (NATS, Redis, Mongo, ARI...) open and close in cleanup_ctx, so SIGTERM
(handled by web.run_app) drains them in reverse order.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis
import uvloop
from aiohttp import web
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from pymongo import AsyncMongoClient

from ringwise_kit import bus
from ringwise_kit.config import KitSettings
from ringwise_kit.logs import configure_logging, get_logger
from ringwise_kit.ops import READINESS_KEY, add_ops_routes

log = get_logger("ringwise_kit.service")

NATS_KEY = web.AppKey("nats", NatsClient)
JS_KEY = web.AppKey("jetstream", JetStreamContext)
REDIS_KEY = web.AppKey("redis", aioredis.Redis)
MONGO_KEY = web.AppKey("mongo", AsyncMongoClient[dict[str, Any]])

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def create_app(settings: KitSettings) -> web.Application:
    """A service's application with logging configured and the ops routes mounted."""
    configure_logging(settings.service_name, settings.log_level)
    app = web.Application()
    add_ops_routes(app)
    return app


def run(app: web.Application, settings: KitSettings) -> None:
    """Serve until SIGTERM/SIGINT, then close every cleanup_ctx resource gracefully."""
    log.info("service_starting", port=settings.http_port, event_loop=settings.event_loop)
    web.run_app(
        app,
        loop=uvloop.new_event_loop() if settings.event_loop == "uvloop" else None,
        host=settings.http_host,
        port=settings.http_port,
        print=None,
        access_log=None,
        shutdown_timeout=settings.shutdown_grace_s,
        handle_signals=True,
    )
    log.info("service_stopped")


def nats_ctx(settings: KitSettings, *streams: bus.StreamSpec) -> CleanupCtx:
    """Connect to NATS, provision the given streams (idempotent), drain on shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        nc = await bus.connect(settings.nats_url, settings.service_name)
        js = nc.jetstream()
        for spec in streams:
            await bus.ensure_stream(js, replace(spec, replicas=settings.stream_replicas))
        app[NATS_KEY] = nc
        app[JS_KEY] = js
        app[READINESS_KEY].add("nats", lambda: nc.is_connected)
        yield
        with contextlib.suppress(Exception):
            await nc.drain()

    return ctx


def redis_ctx(url: str) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        client = aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        app[REDIS_KEY] = client

        async def ping() -> bool:
            return bool(await client.ping())

        app[READINESS_KEY].add("redis", ping)
        yield
        await client.aclose()

    return ctx


def mongo_ctx(url: str) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=2000, tz_aware=True
        )
        app[MONGO_KEY] = client
        app[READINESS_KEY].add("mongo", _cached_ping(client))
        yield
        await client.close()

    return ctx


def _cached_ping(client: AsyncMongoClient[dict[str, Any]], ttl_s: float = 1.0) -> Any:
    """Readiness probes come often; ping Mongo at most once a second."""
    last: dict[str, float | bool] = {"at": 0.0, "ok": False}

    async def ping() -> bool:
        now = time.monotonic()
        if now - float(last["at"]) > ttl_s:
            try:
                await client.admin.command("ping")
                last["ok"] = True
            except Exception:
                last["ok"] = False
            last["at"] = now
        return bool(last["ok"])

    return ping


def consumer_ctx(
    spec: bus.ConsumerSpec,
    handler: Callable[[web.Application], bus.Handler] | None = None,
    *,
    batch_handler: Callable[[web.Application], bus.BatchHandler] | None = None,
    linger_s: float = bus.DurableConsumer.linger_s,
) -> CleanupCtx:
    """Run a durable consumer for the app's lifetime; stop it (finishing in-flight) first.
    handler / batch_handler build the consumer's handler from the started app; linger_s is
    how long a short batch lets messages gather."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        consumer = bus.DurableConsumer(
            app[JS_KEY],
            spec,
            handler=handler(app) if handler else None,
            batch_handler=batch_handler(app) if batch_handler else None,
            linger_s=linger_s,
        )
        await consumer.start()
        app[READINESS_KEY].add(f"consumer:{spec.durable}", lambda: consumer.connected)
        log.info("consumer_started", consumer=spec.durable)
        yield
        await consumer.stop()

    return ctx
