"""Routing service: the one owner of the Stasis application on Asterisk ARI."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from ringwise_kit import bus, service
from ringwise_kit.ari import AriClient
from ringwise_kit.ops import READINESS_KEY

from ringwise_routing.calls.directory_client import NumberDirectory
from ringwise_routing.calls.publisher import EventPublisher
from ringwise_routing.calls.recording import RecordingPolicies
from ringwise_routing.calls.router import CallRouter
from ringwise_routing.settings import RoutingSettings

ROUTER_KEY = web.AppKey("router", CallRouter)


def calls_ctx(settings: RoutingSettings) -> service.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        publisher = EventPublisher(app[service.JS_KEY])
        publisher.start()
        directory = NumberDirectory(
            app[service.NATS_KEY],
            app[service.REDIS_KEY],
            ttl_s=settings.number_cache_ttl_s,
            negative_ttl_s=settings.number_negative_cache_ttl_s,
            timeout_s=settings.directory_timeout_s,
            local_ttl_s=settings.number_local_cache_ttl_s,
        )
        await directory.start()
        ari = AriClient(
            settings.ari_url,
            settings.ari_user,
            settings.ari_password.get_secret_value(),
            settings.ari_app,
        )
        router = CallRouter(ari, directory, publisher, RecordingPolicies(app[service.NATS_KEY]))
        app[ROUTER_KEY] = router
        app[READINESS_KEY].add("ari", lambda: ari.connected)
        await ari.start()
        yield
        # Calls in progress get a moment to finish; what is still up then (a long
        # conversation) stays up in Asterisk and is reconciled by the next instance.
        await router.drain(settings.shutdown_grace_s / 2)
        await ari.close()
        await router.abandon()
        await publisher.stop(settings.shutdown_grace_s / 2)
        await directory.stop()

    return ctx


def create_app(settings: RoutingSettings | None = None) -> web.Application:
    settings = settings or RoutingSettings()
    app = service.create_app(settings)
    app.cleanup_ctx.append(service.nats_ctx(settings, bus.CALLS, bus.RECORDINGS, bus.DEAD_LETTERS))
    app.cleanup_ctx.append(service.redis_ctx(settings.redis_url))
    app.cleanup_ctx.append(calls_ctx(settings))
    return app


def main() -> None:
    settings = RoutingSettings()
    service.run(create_app(settings), settings)


if __name__ == "__main__":
    main()
