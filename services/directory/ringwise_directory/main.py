"""Directory service: tenants, users, numbers, devices; answers resolve_number over NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from ringwise.directory.v1 import resolve_pb2
from ringwise_kit import bus, service, subjects
from ringwise_kit.logs import get_logger

from ringwise_directory.numbers.fixture import load_fixture
from ringwise_directory.numbers.store import DirectoryStore
from ringwise_directory.settings import DirectorySettings

log = get_logger(__name__)

STORE_KEY = web.AppKey("directory_store", DirectoryStore)


def numbers_ctx(settings: DirectorySettings) -> service.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = DirectoryStore(app[service.MONGO_KEY], settings.directory_db)
        await store.ensure_indexes()
        app[STORE_KEY] = store
        nc = app[service.NATS_KEY]
        if settings.directory_fixture:
            for tenant_id, number, version in await load_fixture(store, settings.directory_fixture):
                change = resolve_pb2.NumberChanged(
                    tenant_id=tenant_id, number=number, version=version
                )
                await nc.publish(subjects.number_changed(tenant_id), change.SerializeToString())

        async def resolve(req: resolve_pb2.ResolveNumberRequest) -> resolve_pb2.ResolveNumberReply:
            return await store.resolve(req.number)

        subscription = await bus.serve(
            nc,
            subjects.DIRECTORY_RESOLVE_NUMBER,
            "directory",
            resolve_pb2.ResolveNumberRequest,
            resolve,
        )
        yield
        await subscription.unsubscribe()

    return ctx


def create_app(settings: DirectorySettings | None = None) -> web.Application:
    settings = settings or DirectorySettings()
    app = service.create_app(settings)
    app.cleanup_ctx.append(service.nats_ctx(settings))
    app.cleanup_ctx.append(service.mongo_ctx(settings.mongo_url))
    app.cleanup_ctx.append(numbers_ctx(settings))
    return app


def main() -> None:
    settings = DirectorySettings()
    service.run(create_app(settings), settings)


if __name__ == "__main__":
    main()
