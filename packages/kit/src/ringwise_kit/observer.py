"""A durable consumer that only notes the call events a service will act on.

Voicemail, recording and messaging run this until their own issues give them behaviour:
each owns its durable consumer from day one (so no event is missed once they act), and
logs which events it received and what it will do with them. It does nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from nats.aio.msg import Msg
from ringwise.events.v1 import call_pb2

from ringwise_kit import bus, service, subjects
from ringwise_kit.config import KitSettings
from ringwise_kit.events import decode
from ringwise_kit.logs import bind_call, get_logger

log = get_logger("ringwise_kit.observer")


def observer_ctx(durable: str, plans: Mapping[str, str]) -> service.CleanupCtx:
    """plans maps an event kind (subjects.CALL_ENDED...) to what the service will do."""
    spec = bus.ConsumerSpec(
        stream=subjects.CALLS_STREAM,
        durable=durable,
        filter_subjects=[subjects.call_events_of_kind(kind) for kind in plans],
        # Noting an event twice is harmless: skip the ack round trip.
        confirm_acks=False,
    )

    def handler_factory(_app: web.Application) -> bus.Handler:
        async def note(msg: Msg) -> None:
            event = decode(msg)
            header = event.header
            kind = msg.subject.rsplit(".", 1)[-1]
            details = {}
            if isinstance(event, call_pb2.CallEnded):
                details["disposition"] = call_pb2.Disposition.Name(event.disposition)
            with bind_call(header.call_id, tenant_id=header.tenant_id or None):
                log.info("call_event_noted", kind=kind, will=plans.get(kind, ""), **details)

        return note

    return service.consumer_ctx(spec, handler_factory)


def create_observer_app(settings: KitSettings, plans: Mapping[str, str]) -> web.Application:
    """A whole service that only notes events: ops routes, NATS, one durable consumer."""
    app = service.create_app(settings)
    app.cleanup_ctx.append(service.nats_ctx(settings, bus.CALLS, bus.DEAD_LETTERS))
    app.cleanup_ctx.append(observer_ctx(settings.service_name, plans))
    return app
