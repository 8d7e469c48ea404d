"""Routing service: the one owner of the Stasis application on Asterisk ARI."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from ringwise.directory.v1 import resolve_pb2
from ringwise_kit import bus, service
from ringwise_kit.ari import AriClient
from ringwise_kit.ops import READINESS_KEY

from ringwise_routing.calls import policy
from ringwise_routing.calls.credit_client import CreditClient
from ringwise_routing.calls.directory_client import NumberDirectory
from ringwise_routing.calls.outbound_call import OutboundServices
from ringwise_routing.calls.publisher import EventPublisher
from ringwise_routing.calls.recording import RecordingPolicies
from ringwise_routing.calls.router import CallRouter
from ringwise_routing.calls.session import CallerHungUp
from ringwise_routing.calls.user_lookup import UserLookup
from ringwise_routing.calls.voicemail_step import VoicemailStep
from ringwise_routing.plans.model import RoutingProfile
from ringwise_routing.profiles.document import verify_secret
from ringwise_routing.profiles.source import (
    ProfileChange,
    UserReply,
    UserRouting,
    default_routing,
)
from ringwise_routing.provisioning.pjsip import PjsipOptions
from ringwise_routing.provisioning.provisioner import Provisioner
from ringwise_routing.settings import RoutingSettings

ROUTER_KEY = web.AppKey("router", CallRouter)
PROVISIONER_KEY = web.AppKey("provisioner", Provisioner)


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

        async def find_user(number: str) -> tuple[str, str] | None:
            lookup = await directory.resolve(policy.normalize_number(number))
            if (
                isinstance(lookup, resolve_pb2.ResolveNumberReply)
                and lookup.status == resolve_pb2.ResolveNumberReply.STATUS_FOUND
            ):
                return lookup.tenant_id, lookup.user_id
            return None

        voicemail = VoicemailStep(
            app[service.NATS_KEY],
            ari,
            CallerHungUp,
            timeout_s=settings.voicemail_timeout_s,
            find_user=find_user,
        )
        recording_policies = RecordingPolicies(app[service.NATS_KEY])
        await recording_policies.watch()
        outbound = OutboundServices(
            ari=ari,
            users=UserLookup(app[service.NATS_KEY], timeout_s=settings.directory_timeout_s),
            profiles=_DefaultProfiles(settings),
            credit=CreditClient(app[service.NATS_KEY], timeout_s=settings.billing_timeout_s),
            publisher=publisher,
            trunk_dial=settings.trunk_dial,
            verify_secret=verify_secret,
            ring_timeout_s=settings.outbound_ring_timeout_s,
            max_call_s=settings.outbound_max_call_s,
        )
        router = CallRouter(ari, directory, publisher, voicemail, recording_policies, outbound)
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
        await recording_policies.close()
        await publisher.stop(settings.shutdown_grace_s / 2)
        await directory.stop()

    return ctx


class _DefaultProfiles:
    """Until the profile store is wired in: every user has the default routing and a
    change by feature code cannot be stored."""

    def __init__(self, settings: RoutingSettings) -> None:
        self._settings = settings

    async def routing_for(self, user: UserReply) -> UserRouting:
        return default_routing(user, self._settings.trunk_dial)

    async def change(
        self, user: UserReply, change: ProfileChange, *, origin: str
    ) -> RoutingProfile:
        raise RuntimeError("routing profiles cannot be stored yet")


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
