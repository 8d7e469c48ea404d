"""Routing service: the one owner of the Stasis application on Asterisk ARI."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from pymongo.errors import PyMongoError
from ringwise.directory.v1 import resolve_pb2
from ringwise_kit import api, bus, service
from ringwise_kit.ari import AriClient
from ringwise_kit.logs import get_logger
from ringwise_kit.ops import READINESS_KEY

from ringwise_routing.calls import policy
from ringwise_routing.calls.call_state import CallStateStore
from ringwise_routing.calls.credit_client import CreditClient
from ringwise_routing.calls.directory_client import NumberDirectory
from ringwise_routing.calls.outbound_call import OutboundServices
from ringwise_routing.calls.publisher import EventPublisher
from ringwise_routing.calls.recording import RecordingPolicies
from ringwise_routing.calls.router import CallRouter
from ringwise_routing.calls.user_lookup import UserLookup
from ringwise_routing.calls.voicemail_step import VoicemailStep
from ringwise_routing.calls.waiting import CallerHungUp
from ringwise_routing.click_to_dial.http import routes as click_to_dial_routes
from ringwise_routing.click_to_dial.status import CallStatusStore
from ringwise_routing.profiles.document import verify_secret
from ringwise_routing.profiles.http import routes as profile_routes
from ringwise_routing.profiles.service import StoredProfiles
from ringwise_routing.profiles.store import ProfileStore
from ringwise_routing.provisioning.edge import PhonesViaEdge
from ringwise_routing.provisioning.pjsip import PjsipOptions
from ringwise_routing.provisioning.provisioner import Provisioner
from ringwise_routing.settings import RoutingSettings

ROUTER_KEY = web.AppKey("router", CallRouter)
PROVISIONER_KEY = web.AppKey("provisioner", Provisioner)
PROFILES_KEY = web.AppKey("profiles", StoredProfiles)
log = get_logger(__name__)


def profiles_ctx(settings: RoutingSettings) -> service.CleanupCtx:
    """The users' routing profiles (Mongo), cached per instance and invalidated over NATS."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = ProfileStore(app[service.MONGO_KEY], settings.routing_db)
        profiles = StoredProfiles(
            app[service.NATS_KEY],
            store,
            settings.trunk_dial,
            ttl_s=settings.profile_cache_ttl_s,
            directory_timeout_s=settings.directory_timeout_s,
        )
        # Calls must not wait for Mongo at start-up: the indexes are made in the background,
        # retried until Mongo answers (reads work without them).
        indexes = asyncio.create_task(_ensure_indexes(store))
        await profiles.start()
        app[PROFILES_KEY] = profiles
        yield
        indexes.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await indexes
        await profiles.close()

    return ctx


async def _ensure_indexes(store: ProfileStore) -> None:
    delay = 0.5
    while True:
        try:
            await store.ensure_indexes()
            return
        except PyMongoError as exc:
            log.warning("profile_indexes_not_ready", error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def api_ctx(settings: RoutingSettings) -> service.CleanupCtx:
    def ctx(app: web.Application) -> AsyncIterator[None]:
        router = profile_routes(app[PROFILES_KEY])
        router.include(
            click_to_dial_routes(
                app[PROFILES_KEY],
                UserLookup(app[service.NATS_KEY], timeout_s=settings.directory_timeout_s),
                CallStatusStore(app[service.REDIS_KEY]),
                # Call handling starts after the API (calls_ctx): until then, 503.
                lambda: app.get(ROUTER_KEY),
            )
        )
        return api.api_ctx("routing", router)(app)

    return ctx


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
            instance=settings.asterisk_instance,
        )

        async def find_user(number: str) -> tuple[str, str] | None:
            lookup = await directory.resolve(policy.normalize_number(number))
            if (
                isinstance(lookup, resolve_pb2.ResolveNumberReply)
                and lookup.status == resolve_pb2.ResolveNumberReply.STATUS_FOUND
            ):
                return lookup.tenant_id, lookup.user_id
            return None

        # Which endpoints are phones is learnt by the provisioner (below).
        phones = PhonesViaEdge(settings.phones_via_edge)
        voicemail = VoicemailStep(
            app[service.NATS_KEY],
            ari,
            CallerHungUp,
            timeout_s=settings.voicemail_timeout_s,
            find_user=find_user,
            find_colleague=directory.find_colleague,
            find_team=directory.find_team,
            trunk_dial=settings.trunk_dial,
            phones=phones,
        )
        recording_policies = RecordingPolicies(app[service.NATS_KEY])
        await recording_policies.watch()
        call_state = CallStateStore(app[service.REDIS_KEY])
        outbound = OutboundServices(
            ari=ari,
            users=UserLookup(app[service.NATS_KEY], timeout_s=settings.directory_timeout_s),
            profiles=app[PROFILES_KEY],
            credit=CreditClient(app[service.NATS_KEY], timeout_s=settings.billing_timeout_s),
            publisher=publisher,
            trunk_dial=settings.trunk_dial,
            verify_secret=verify_secret,
            ring_timeout_s=settings.outbound_ring_timeout_s,
            max_call_s=settings.outbound_max_call_s,
            call_state=call_state,
            phones=phones,
        )
        router = CallRouter(
            ari,
            directory,
            publisher,
            voicemail,
            recording_policies,
            profiles=app[PROFILES_KEY],
            outbound=outbound,
            trunk_dial=settings.trunk_dial,
            call_state=call_state,
            phones=phones,
        )
        app[ROUTER_KEY] = router
        provisioner = Provisioner(
            app[service.NATS_KEY],
            app[service.REDIS_KEY],
            ari,
            PjsipOptions(
                transport=settings.pjsip_transport,
                rewrite_contact=settings.pjsip_rewrite_contact,
            ),
            resync_s=settings.pjsip_resync_s,
            phones_via_edge=phones,
        )
        app[PROVISIONER_KEY] = provisioner
        await provisioner.start()
        app[READINESS_KEY].add("ari", lambda: ari.connected)
        await ari.start()
        yield
        # Calls in progress get a moment to finish; what is still up then (a long
        # conversation) stays up in Asterisk and is reconciled by the next instance.
        await router.drain(settings.shutdown_grace_s / 2)
        await provisioner.stop()
        await ari.close()
        await router.abandon()
        await call_state.close()  # what the calls left up noted last, for the next instance
        await recording_policies.close()
        await publisher.stop(settings.shutdown_grace_s / 2)
        await directory.stop()

    return ctx


def create_app(settings: RoutingSettings | None = None) -> web.Application:
    settings = settings or RoutingSettings()
    app = service.create_app(settings)
    app.cleanup_ctx.append(service.nats_ctx(settings, bus.CALLS, bus.RECORDINGS, bus.DEAD_LETTERS))
    app.cleanup_ctx.append(service.redis_ctx(settings.redis_url))
    app.cleanup_ctx.append(service.mongo_ctx(settings.mongo_url))
    app.cleanup_ctx.append(profiles_ctx(settings))
    app.cleanup_ctx.append(api_ctx(settings))
    app.cleanup_ctx.append(calls_ctx(settings))
    return app


def main() -> None:
    settings = RoutingSettings()
    service.run(create_app(settings), settings)


if __name__ == "__main__":
    main()
