"""What voicemail's integration tests build on real Mongo-wire and S3: an audio store on a
bucket of the test's own, and the service's Voicemail whose other parts (mailer, Asterisk,
JetStream, directory) are the test's stand-ins or fail when touched."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from nats.js import JetStreamContext
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from ringwise_dev.infra import Infra
from ringwise_voicemail.directory import DirectoryLookups
from ringwise_voicemail.mailbox.deposit import DepositLimits
from ringwise_voicemail.mailbox.store import MailboxStore
from ringwise_voicemail.messages.audio import AudioStore
from ringwise_voicemail.messages.deposits import Asterisks, Voicemail, deposits_done, email_sends
from ringwise_voicemail.messages.email import Mailer
from ringwise_voicemail.messages.store import MessageStore
from ringwise_voicemail.settings import VoicemailSettings


class Unused:
    """A part the test must never reach: using it fails the test."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the test reached {self._what} ({name})")


def s3_audio(infra: Infra, bucket: str) -> AudioStore:
    return AudioStore(
        VoicemailSettings(
            s3_endpoint=infra.endpoints.s3_endpoint,
            s3_access_key=infra.endpoints.s3_access_key,
            s3_secret_key=SecretStr(infra.endpoints.s3_secret_key),
            s3_bucket=bucket,
        )
    )


def voicemail_on(
    client: AsyncMongoClient[dict[str, Any]],
    db: str,
    audio: AudioStore,
    clock: datetime,
    *,
    mailboxes: MailboxStore | None = None,
    messages: MessageStore | None = None,
    mailer: Mailer | None = None,
    asterisk: Any = None,
    js: Any = None,
    directory: DirectoryLookups | None = None,
) -> Voicemail:
    """The Voicemail of database `db`, its clock standing still at `clock`."""
    return Voicemail(
        mailboxes=mailboxes or MailboxStore(client, db),
        messages=messages or MessageStore(client, db),
        audio=audio,
        mailer=mailer or cast(Mailer, Unused("the mailer")),
        asterisk=cast(Asterisks, asterisk or Unused("Asterisk")),
        js=cast(JetStreamContext, js or Unused("JetStream")),
        done=deposits_done(client, db),
        limits=DepositLimits(),
        mail_from="voicemail@ringwise.invalid",
        email_link_ttl_s=3600,
        directory=directory or cast(DirectoryLookups, Unused("the directory")),
        sends=email_sends(client, db),
        clock=lambda: clock,
    )
