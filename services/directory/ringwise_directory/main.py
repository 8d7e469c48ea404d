"""Directory service: tenants, users, credentials, numbers, devices, teams, contacts,
schedules and their history. Serves the gateway's REST calls (ringwise.v1.api.directory),
resolve_number, resolve_user, resolve_team, authenticate and list_sip_devices over NATS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from argon2 import PasswordHasher
from nats.aio.client import Client as NatsClient
from pymongo.asynchronous.database import AsyncDatabase
from ringwise.directory.v1 import auth_pb2, devices_pb2, resolve_pb2
from ringwise_kit import service, subjects
from ringwise_kit.logs import get_logger

from ringwise_directory.api import build_router
from ringwise_directory.common.context import Directory, Notifier
from ringwise_directory.common.records import Clock, Doc, utc_now
from ringwise_directory.common.serving import ConcurrentServer
from ringwise_directory.numbers.fixture import load_fixture
from ringwise_directory.settings import DirectorySettings
from ringwise_directory.stores import Stores

log = get_logger(__name__)

STORES_KEY = web.AppKey("directory_stores", Stores)


def hasher_for(settings: DirectorySettings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.password_hash_time_cost,
        memory_cost=settings.password_hash_memory_kib,
        parallelism=1,
    )


async def lifecycle_loop(stores: Stores, interval_s: float) -> None:
    while True:
        try:
            released = await stores.numbers.expire()
            if released:
                log.info("numbers_released", count=len(released))
        except Exception:
            log.exception("number_lifecycle_failed")
        await asyncio.sleep(interval_s)


@dataclass
class DirectoryService:
    """The directory's NATS side, running: its stores, request server and lifecycle job."""

    stores: Stores
    server: ConcurrentServer
    lifecycle: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self.lifecycle is not None:
            self.lifecycle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.lifecycle
        await self.server.stop()


async def start_directory(
    nc: NatsClient,
    db: AsyncDatabase[Doc],
    settings: DirectorySettings,
    *,
    clock: Clock = utc_now,
    hasher: PasswordHasher | None = None,
    run_lifecycle: bool = True,
) -> DirectoryService:
    """Prepare the database, load the fixture, then answer on every directory subject."""
    directory = Directory(db=db, notifier=Notifier(nc), clock=clock, sip_realm=settings.sip_realm)
    stores = Stores.build(directory, hasher or hasher_for(settings))
    await stores.ensure_indexes()
    if settings.directory_fixture:
        for tenant_id, number, version in await load_fixture(stores, settings.directory_fixture):
            await directory.notifier.number_changed(tenant_id, number, version)
    if (
        settings.operator_email
        and settings.operator_password
        and await stores.users.ensure_operator(
            settings.operator_email, settings.operator_password.get_secret_value()
        )
    ):
        log.info("operator_admin_created")

    async def resolve(req: resolve_pb2.ResolveNumberRequest) -> resolve_pb2.ResolveNumberReply:
        return await stores.resolver.number(req.number)

    async def list_sip(req: devices_pb2.ListSipDevicesRequest) -> devices_pb2.ListSipDevicesReply:
        devices, next_after = await stores.devices.list_sip(req.after, req.limit)
        return devices_pb2.ListSipDevicesReply(devices=devices, next_after=next_after)

    server = ConcurrentServer(nc, settings.max_concurrent_requests)
    await server.serve_proto(
        subjects.DIRECTORY_RESOLVE_NUMBER, "directory", resolve_pb2.ResolveNumberRequest, resolve
    )
    await server.serve_proto(
        subjects.DIRECTORY_RESOLVE_USER,
        "directory",
        resolve_pb2.ResolveUserRequest,
        stores.resolver.user,
    )
    await server.serve_proto(
        subjects.DIRECTORY_RESOLVE_TEAM,
        "directory",
        resolve_pb2.ResolveTeamRequest,
        stores.resolver.team,
    )
    await server.serve_proto(
        subjects.DIRECTORY_AUTHENTICATE,
        "directory",
        auth_pb2.AuthenticateRequest,
        stores.credentials.authenticate,
    )
    await server.serve_proto(
        subjects.DIRECTORY_LIST_SIP_DEVICES,
        "directory",
        devices_pb2.ListSipDevicesRequest,
        list_sip,
    )
    await server.serve_api("directory", build_router(stores))
    # After a crash, changes stored but never announced: routing starts over from the data.
    await nc.publish(subjects.DIRECTORY_STARTED, b"")
    running = DirectoryService(stores, server)
    if run_lifecycle:
        running.lifecycle = asyncio.create_task(
            lifecycle_loop(stores, settings.number_lifecycle_interval_s), name="number-lifecycle"
        )
    return running


def directory_ctx(settings: DirectorySettings) -> service.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        running = await start_directory(
            app[service.NATS_KEY], app[service.MONGO_KEY][settings.directory_db], settings
        )
        app[STORES_KEY] = running.stores
        yield
        await running.stop()

    return ctx


def create_app(settings: DirectorySettings | None = None) -> web.Application:
    settings = settings or DirectorySettings()
    app = service.create_app(settings)
    app.cleanup_ctx.append(service.nats_ctx(settings))
    app.cleanup_ctx.append(service.mongo_ctx(settings.mongo_url))
    app.cleanup_ctx.append(directory_ctx(settings))
    return app


def main() -> None:
    settings = DirectorySettings()
    service.run(create_app(settings), settings)


if __name__ == "__main__":
    main()
