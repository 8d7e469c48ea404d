"""Voicemail service: mailboxes, greetings, PINs, messages, voicemail-to-email, MWI, alerts,
retention. Routing drives the media over ARI and asks this service over NATS (deposits,
mailbox logins); the gateway forwards the REST API (voicemail/api.yaml)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from ringwise.voicemail.v1 import deposit_pb2, mailbox_pb2
from ringwise_kit import api, bus, service, subjects
from ringwise_kit.ari import AriInstances

from ringwise_voicemail.directory import Directory
from ringwise_voicemail.http import build_router
from ringwise_voicemail.mailbox.deposit import DepositLimits
from ringwise_voicemail.mailbox.store import MailboxStore
from ringwise_voicemail.messages.audio import AudioStore
from ringwise_voicemail.messages.deposits import (
    DEPOSIT_CONSUMER,
    VOICEMAIL_STREAM,
    Voicemail,
    deposits_done,
    email_sends,
    utc_now,
)
from ringwise_voicemail.messages.phone import PhoneMailbox, phone_sessions
from ringwise_voicemail.messages.retention_job import RetentionJob, retention_ctx
from ringwise_voicemail.messages.store import MessageStore
from ringwise_voicemail.settings import VoicemailSettings

VOICEMAIL_KEY = web.AppKey("voicemail", Voicemail)


def voicemail_ctx(settings: VoicemailSettings) -> service.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        client = app[service.MONGO_KEY]
        mailboxes = MailboxStore(client, settings.voicemail_db)
        messages = MessageStore(client, settings.voicemail_db)
        await mailboxes.ensure_indexes()
        await messages.ensure_indexes()
        audio = AudioStore(settings)
        await audio.ensure_bucket()
        # REST only (routing owns the Stasis app): each recording is fetched from the
        # Asterisk (pod) that recorded it, named in the request.
        ari = AriInstances(settings)
        nc = app[service.NATS_KEY]
        voicemail = Voicemail(
            mailboxes=mailboxes,
            messages=messages,
            audio=audio,
            mailer=settings.mailer(),
            asterisk=ari,
            js=app[service.JS_KEY],
            done=deposits_done(client, settings.voicemail_db),
            limits=DepositLimits(
                max_seconds=settings.deposit_max_seconds, min_seconds=settings.deposit_min_seconds
            ),
            mail_from=settings.mail_from,
            email_link_ttl_s=settings.email_link_ttl_s,
            directory=Directory(nc, settings.directory_timeout_s),
            sends=email_sends(client, settings.voicemail_db),
            audio_url_ttl_s=settings.audio_url_ttl_s,
            phones_via_edge=settings.phones_via_edge,
        )
        app[VOICEMAIL_KEY] = voicemail
        phone = PhoneMailbox(voicemail, phone_sessions(client, settings.voicemail_db))
        subs = [
            await bus.serve(
                nc,
                subjects.VOICEMAIL_MAILBOX_LOGIN,
                "voicemail",
                mailbox_pb2.MailboxLoginRequest,
                phone.login,
            ),
            await bus.serve(
                nc,
                subjects.VOICEMAIL_MAILBOX_LIST,
                "voicemail",
                mailbox_pb2.MailboxListRequest,
                phone.list,
            ),
            await bus.serve(
                nc,
                subjects.VOICEMAIL_MAILBOX_ACTION,
                "voicemail",
                mailbox_pb2.MailboxActionRequest,
                phone.act,
            ),
            await bus.serve(
                nc,
                subjects.VOICEMAIL_DEPOSIT_BEGIN,
                "voicemail",
                deposit_pb2.DepositBeginRequest,
                voicemail.deposit_begin,
            ),
            await bus.serve(
                nc,
                subjects.VOICEMAIL_DEPOSIT_COMPLETE,
                "voicemail",
                deposit_pb2.DepositCompleteRequest,
                voicemail.deposit_complete,
            ),
        ]
        yield
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await ari.close()
        audio.close()

    return ctx


async def api_ctx(app: web.Application) -> AsyncIterator[None]:
    """The REST operations (forwarded by the gateway), bound to this app's mailbox service."""
    router = build_router(app[VOICEMAIL_KEY])
    sub = await api.serve_api(app[service.NATS_KEY], "voicemail", router)
    yield
    with contextlib.suppress(Exception):
        await sub.unsubscribe()


def create_app(settings: VoicemailSettings | None = None) -> web.Application:
    settings = settings or VoicemailSettings()
    app = service.create_app(settings)
    app.cleanup_ctx.append(service.nats_ctx(settings, VOICEMAIL_STREAM, bus.DEAD_LETTERS))
    app.cleanup_ctx.append(service.mongo_ctx(settings.mongo_url))
    app.cleanup_ctx.append(voicemail_ctx(settings))
    app.cleanup_ctx.append(
        service.consumer_ctx(
            DEPOSIT_CONSUMER, batch_handler=lambda a: a[VOICEMAIL_KEY].handle_batch
        )
    )
    app.cleanup_ctx.append(api_ctx)
    app.cleanup_ctx.append(
        retention_ctx(
            lambda a: RetentionJob(
                a[VOICEMAIL_KEY].mailboxes,
                a[VOICEMAIL_KEY].messages,
                a[VOICEMAIL_KEY].audio,
                a[VOICEMAIL_KEY].refresh_counts,
            ),
            settings.retention_interval_s,
            utc_now,
        )
    )
    return app


def main() -> None:
    settings = VoicemailSettings()
    service.run(create_app(settings), settings)


if __name__ == "__main__":
    main()
