"""Voicemail-to-email across a crash at each point of a send, against real Mongo-wire, S3
and the SMTP sink (aiosmtpd): the send ledger makes every attempt that died before the end
of DATA a plain first send, and leaves exactly one window in which the email can go twice
(the end of DATA went out, our record of the 250 did not) - with the same Message-ID, and
the ledger naming the message as uncertain."""

from __future__ import annotations

import email
import email.policy
import itertools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient
from ringwise_dev.infra import Infra
from ringwise_voicemail.mailbox.store import MailboxStore
from ringwise_voicemail.messages.audio import message_key
from ringwise_voicemail.messages.email import EmailNotSent, Mailer
from ringwise_voicemail.messages.store import MessageStore
from voicemail_harness import s3_audio, voicemail_on

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

_runs = itertools.count()
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "  # only carried as an attachment here


class Crash(BaseException):
    """What SIGKILL does to the pipeline at one point: nothing after it runs (BaseException,
    so no `except Exception` on the way handles it)."""


class CrashingMailer(Mailer):
    """The real SMTP conversation, with the process dying at a chosen point of it."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.crash_at = ""

    async def send(
        self, message: EmailMessage, before_commit: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        async def commit_point() -> None:
            if self.crash_at == "before_ledger":
                raise Crash
            if before_commit is not None:
                await before_commit()
            if self.crash_at == "after_ledger":
                raise Crash  # the end of DATA never leaves

        await super().send(message, commit_point)
        if self.crash_at == "after_250":
            raise Crash


class CrashingMessages(MessageStore):
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        super().__init__(client, database)
        self.crash_on_mark = False

    async def mark(self, message_id: str, **fields: Any) -> None:
        if self.crash_on_mark and "emailed_at" in fields:
            raise Crash
        await super().mark(message_id, **fields)


class Parts:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], infra: Infra) -> None:
        run = next(_runs)
        db = f"voicemail_email_ledger_{run}"
        self.infra = infra
        self.mailer = CrashingMailer(infra.endpoints.smtp_host, infra.endpoints.smtp_port)
        self.messages = CrashingMessages(client, db)
        self.mailboxes = MailboxStore(client, db)
        self.audio = s3_audio(infra, f"vm-email-ledger-{run}")
        # The email step reaches neither Asterisk, JetStream nor the directory.
        self.vm = voicemail_on(
            client,
            db,
            self.audio,
            T0,
            mailboxes=self.mailboxes,
            messages=self.messages,
            mailer=self.mailer,
        )
        self.run = run

    async def message(self, user_id: str, message_id: str) -> dict[str, Any]:
        key = message_key("acme", user_id, message_id)
        await self.audio.put(key, WAV)
        doc = {
            "_id": message_id,
            "tenant_id": "acme",
            "user_id": user_id,
            "folder": "new",
            "received_at": T0,
            "duration_s": 4.0,
            "caller_number": "+441632960001",
            "caller_name": "Lucy Lane",
            "urgent": False,
            "audio_key": key,
            "emailed_at": None,
        }
        assert await self.messages.insert_once(doc)
        return doc

    def emails_of(self, message_id: str) -> list[EmailMessage]:
        found = []
        maildir = self.infra.endpoints.maildir
        for sub in ("new", "cur"):
            for path in (maildir / sub).glob("*"):
                mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                if mail["X-Ringwise-Message-Id"] == message_id:
                    found.append(mail)
        return found

    async def attempt(self, user_id: str, message_id: str, crash_at: str = "") -> bool:
        """One pipeline attempt at the email; True if it completed, False if it 'died'."""
        mailbox = await self.mailboxes.get("acme", user_id)
        doc = await self.messages.by_id(message_id)
        assert mailbox is not None and doc is not None
        self.mailer.crash_at = crash_at if crash_at != "before_mark" else ""
        self.messages.crash_on_mark = crash_at == "before_mark"
        try:
            await self.vm._email(mailbox, doc)
        except Crash:
            return False
        finally:
            self.mailer.crash_at = ""
            self.messages.crash_on_mark = False
        return True

    async def ledger(self, message_id: str) -> dict[str, Any]:
        return await self.vm.sends.find_one({"_id": message_id}) or {}


@pytest_asyncio.fixture(loop_scope="session")
async def parts(infra: Infra) -> AsyncIterator[Parts]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infra.endpoints.mongo_url, tz_aware=True
    )
    made = Parts(client, infra)
    await made.audio.ensure_bucket()
    yield made
    made.audio.close()
    await client.close()


async def mailbox(parts: Parts, user_id: str) -> None:
    await parts.mailboxes.put_settings("acme", user_id, {"email": f"{user_id}@acme.test"}, T0)


@pytest.mark.parametrize("crash_at", ["before_ledger", "after_ledger"])
async def test_a_send_that_died_before_the_end_of_data_is_sent_once_on_redelivery(
    parts: Parts, crash_at: str
) -> None:
    user = f"pre-{crash_at}-{parts.run}"
    await mailbox(parts, user)
    message_id = f"m-{user}"
    await parts.message(user, message_id)

    assert not await parts.attempt(user, message_id, crash_at)
    # The server saw DATA without its end when the connection went: it delivered nothing.
    assert parts.emails_of(message_id) == []
    assert await parts.attempt(user, message_id)
    [mail] = parts.emails_of(message_id)
    assert mail["Message-ID"] == f"<vm-{message_id}@ringwise>"
    ledger = await parts.ledger(message_id)
    assert ledger["sent_at"] == T0 and ledger["to"] == f"{user}@acme.test"
    # Died after the ledger said "committing": the redelivery could not know, and counted it.
    assert ledger.get("uncertain_resends", 0) == (1 if crash_at == "after_ledger" else 0)
    assert (await parts.messages.by_id(message_id) or {})["emailed_at"] == T0
    # Once marked, further redeliveries send nothing.
    assert await parts.attempt(user, message_id)
    assert len(parts.emails_of(message_id)) == 1


async def test_the_only_window_is_between_the_end_of_data_and_our_record_of_the_250(
    parts: Parts,
) -> None:
    user = f"window-{parts.run}"
    await mailbox(parts, user)
    message_id = f"m-{user}"
    await parts.message(user, message_id)

    assert not await parts.attempt(user, message_id, "after_250")
    assert len(parts.emails_of(message_id)) == 1  # the server has it; we never heard
    ledger = await parts.ledger(message_id)
    assert ledger["committing_at"] == T0 and ledger.get("sent_at") is None
    assert await parts.attempt(user, message_id)
    twice = parts.emails_of(message_id)
    assert len(twice) == 2
    assert {m["Message-ID"] for m in twice} == {f"<vm-{message_id}@ringwise>"}
    assert (await parts.ledger(message_id))["uncertain_resends"] == 1


async def test_a_crash_after_the_ledger_recorded_the_250_sends_nothing_again(
    parts: Parts,
) -> None:
    user = f"post-{parts.run}"
    await mailbox(parts, user)
    message_id = f"m-{user}"
    await parts.message(user, message_id)

    assert not await parts.attempt(user, message_id, "before_mark")
    assert len(parts.emails_of(message_id)) == 1
    assert (await parts.messages.by_id(message_id) or {})["emailed_at"] is None
    assert await parts.attempt(user, message_id)
    assert len(parts.emails_of(message_id)) == 1
    assert (await parts.messages.by_id(message_id) or {})["emailed_at"] == T0
    assert (await parts.ledger(message_id)).get("uncertain_resends", 0) == 0


async def test_an_email_that_never_reached_a_server_is_not_counted_as_uncertain(
    parts: Parts,
) -> None:
    """No SMTP server answering: certainly not sent, so the ledger holds no "committing"
    mark and the retry is a first send."""
    user = f"unreachable-{parts.run}"
    await mailbox(parts, user)
    message_id = f"m-{user}"
    await parts.message(user, message_id)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    mailbox_doc = await parts.mailboxes.get("acme", user)
    doc = await parts.messages.by_id(message_id)
    assert mailbox_doc is not None and doc is not None
    parts.vm.mailer = Mailer("127.0.0.1", closed_port, timeout_s=2.0)
    try:
        with pytest.raises(EmailNotSent):
            await parts.vm._email(mailbox_doc, doc)
    finally:
        parts.vm.mailer = parts.mailer
    assert (await parts.ledger(message_id)).get("committing_at") is None
    assert await parts.attempt(user, message_id)
    assert len(parts.emails_of(message_id)) == 1
    assert (await parts.ledger(message_id)).get("uncertain_resends", 0) == 0
