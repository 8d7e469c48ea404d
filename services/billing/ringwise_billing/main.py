"""Billing service: stores every call's CDR exactly once (rating is issue #8's)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from ringwise_kit import bus, service

from ringwise_billing.cdrs import consumer, http
from ringwise_billing.cdrs.store import CdrStore
from ringwise_billing.settings import BillingSettings


def store_ctx(settings: BillingSettings) -> service.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = CdrStore(app[service.MONGO_KEY], settings.billing_db)
        await store.ensure_indexes()
        app[http.STORE_KEY] = store
        yield

    return ctx


def create_app(settings: BillingSettings | None = None) -> web.Application:
    settings = settings or BillingSettings()
    app = service.create_app(settings)
    app.cleanup_ctx.append(service.nats_ctx(settings, bus.CALLS, bus.DEAD_LETTERS))
    app.cleanup_ctx.append(service.mongo_ctx(settings.mongo_url))
    app.cleanup_ctx.append(store_ctx(settings))
    app.cleanup_ctx.append(
        service.consumer_ctx(
            consumer.CONSUMER, batch_handler=lambda a: consumer.batch_handler(a[http.STORE_KEY])
        )
    )
    http.add_routes(app)
    return app


def main() -> None:
    settings = BillingSettings()
    service.run(create_app(settings), settings)


if __name__ == "__main__":
    main()
