"""Deposits: what routing plays and records (deposit_begin), and what happens to a finished
recording (deposit_complete, then the pipeline).

deposit_complete only validates and puts the deposit on the VOICEMAIL stream (de-duplicated
by deposit id); the pipeline then stores the audio (S3) and the message (Mongo), emails it,
raises the alert, pushes the message counts to Asterisk (MWI) and deletes Asterisk's copy.
Each step is idempotent and recorded, so a crash anywhere repeats no visible effect: the
message is stored once, counted once (counts are recomputed, not incremented) and emailed
once, through a send ledger (email_sends): the one window left, between the moment the end of
DATA goes to the SMTP server and our record of its 250, sends the same Message-ID again; the
ledger names every message that was in that window (docs/voicemail.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError
from ringwise.events.v1 import call_pb2
from ringwise.voicemail.v1 import alerts_pb2, deposit_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.ari import AriNotFound, UnknownInstance, is_instance_name
from ringwise_kit.events import from_timestamp, to_timestamp
from ringwise_kit.logs import bind_call, get_logger

from ringwise_voicemail.directory import DirectoryLookups, mwi_targets
from ringwise_voicemail.mailbox.deposit import DepositLimits, trim_silence
from ringwise_voicemail.mailbox.greetings import Availability, GreetingChoice, choose_greeting
from ringwise_voicemail.mailbox.retention import Folder
from ringwise_voicemail.mailbox.store import Mailbox, MailboxStore, mwi_mailbox
from ringwise_voicemail.messages import mwi
from ringwise_voicemail.messages.audio import AudioStore, message_key, wav_duration_s
from ringwise_voicemail.messages.email import EmailNotSent, Mailer, compose, message_id_header
from ringwise_voicemail.messages.store import MessageStore

log = get_logger(__name__)

DEPOSITS = Counter("ringwise_voicemail_deposits_total", "Finished deposits by outcome", ["outcome"])
EMAILS_UNCERTAIN = Counter(
    "ringwise_voicemail_emails_resent_uncertain_total",
    "Emails sent again because an earlier attempt died between the end of DATA and its 250",
)
RECORDING_FORMAT = "wav"
# Prompts from the Asterisk core sounds.
SYSTEM_GREETING = ("sound:vm-nobodyavail",)  # "Nobody is available to take your call..."
LEAVE_MESSAGE = ("sound:vm-intro",)  # "Please leave your message after the tone..."
PIPELINE_CONCURRENCY = 8

Clock = Callable[[], datetime]
Doc = dict[str, Any]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Asterisk(Protocol):
    """The ARI REST calls voicemail makes (ringwise_kit.ari.AriClient has them)."""

    async def stored_recording_file(self, name: str) -> bytes: ...

    async def delete_stored_recording(self, name: str) -> bool: ...

    async def originate_to_dialplan(
        self,
        endpoint: str,
        *,
        context: str,
        extension: str,
        channel_id: str,
        variables: dict[str, str] | None = None,
        priority: int = 1,
        timeout_s: int = 10,
    ) -> None: ...


class Asterisks(Protocol):
    """The Asterisks voicemail reaches over ARI (ringwise_kit.ari.AriInstances): the one that
    recorded a deposit or greeting (named in the request), "" for the default (MWI)."""

    async def client(self, instance: str = "") -> Asterisk: ...


AVAILABILITY = {
    deposit_pb2.AVAILABILITY_UNSPECIFIED: Availability.AVAILABLE,
    deposit_pb2.AVAILABILITY_AVAILABLE: Availability.AVAILABLE,
    deposit_pb2.AVAILABILITY_BUSY: Availability.BUSY,
    deposit_pb2.AVAILABILITY_UNAVAILABLE: Availability.UNAVAILABLE,
    deposit_pb2.AVAILABILITY_EXTENDED_ABSENCE: Availability.EXTENDED_ABSENCE,
}


def recording_name(tenant_id: str, deposit_id: str) -> str:
    prefix = subjects.VOICEMAIL_RECORDING_NAME_PREFIX
    return f"{prefix}{subjects.tenant_token(tenant_id)}-{deposit_id}"


@dataclass
class Voicemail:
    """Everything the deposit flow needs; built once per service (main.py)."""

    mailboxes: MailboxStore
    messages: MessageStore
    audio: AudioStore
    mailer: Mailer
    asterisk: Asterisks
    js: JetStreamContext
    done: AsyncCollection[Doc]
    limits: DepositLimits
    mail_from: str
    email_link_ttl_s: int
    directory: DirectoryLookups
    # The email send ledger: per message, when the end of DATA went out and when it was sent.
    sends: AsyncCollection[Doc]
    audio_url_ttl_s: int = 900
    # The SIP edge's phone socket (messages/mwi.py); empty: no location service.
    phones_via_edge: str = ""
    clock: Clock = utc_now

    # -- media URIs ---------------------------------------------------------------------------

    def greeting_media(self, choice: GreetingChoice) -> list[str]:
        if choice.greeting is not None:
            media = [self.audio_media(choice.greeting.audio_key)]
        elif choice.name is not None:
            # The system greeting around the recorded name: "<name> ... is unavailable".
            media = [self.audio_media(choice.name.audio_key), "sound:vm-isunavail"]
        else:
            media = list(SYSTEM_GREETING)
        if choice.accepts_message:
            media += LEAVE_MESSAGE
        return media

    def audio_media(self, key: str) -> str:
        # Asterisk fetches (and caches) remote media over HTTP: a short-lived S3 link.
        return "sound:" + self.audio.url(key, 3600)

    # -- request/reply for routing ----------------------------------------------------------

    async def deposit_begin(
        self, req: deposit_pb2.DepositBeginRequest
    ) -> deposit_pb2.DepositBeginReply:
        reply = deposit_pb2.DepositBeginReply
        if not req.tenant_id or not req.user_id:
            raise ValueError("tenant_id and user_id are required")
        mailbox = await self.mailboxes.get(req.tenant_id, req.user_id)
        if mailbox is None:
            return reply(status=reply.STATUS_NO_MAILBOX)
        choice = choose_greeting(
            mailbox.greetings,
            AVAILABILITY.get(req.availability, Availability.AVAILABLE),
            self.clock(),
            mailbox.time_zone,
            extended_absence_enabled=mailbox.extended_absence,
        )
        deposit_id = uuid.uuid4().hex
        return reply(
            status=reply.STATUS_RECORD if choice.accepts_message else reply.STATUS_GREETING_ONLY,
            deposit_id=deposit_id,
            greeting_media=self.greeting_media(choice),
            recording_name=recording_name(req.tenant_id, deposit_id),
            recording_format=RECORDING_FORMAT,
            max_seconds=self.limits.max_seconds,
            max_silence_seconds=self.limits.max_silence_seconds,
            greeting=choice.reason,
        )

    async def deposit_complete(
        self, req: deposit_pb2.DepositCompleteRequest
    ) -> deposit_pb2.DepositCompleteReply:
        reply = deposit_pb2.DepositCompleteReply
        if not req.deposit_id or not req.tenant_id or not req.user_id:
            raise ValueError("deposit_id, tenant_id and user_id are required")
        if req.recording_name and req.recording_name != recording_name(
            req.tenant_id, req.deposit_id
        ):
            raise ValueError("recording_name does not belong to this deposit")
        if not is_instance_name(req.asterisk_instance):
            raise ValueError(f"{req.asterisk_instance!r} is not an Asterisk instance name")
        mailbox = await self.mailboxes.get(req.tenant_id, req.user_id)
        if mailbox is None:
            await self._drop_recording(req.recording_name, req.asterisk_instance)
            return reply(status=reply.STATUS_NO_MAILBOX)
        if not req.recording_name or not self.limits.keeps(req.duration_ms / 1000):
            DEPOSITS.labels("too_short").inc()
            await self._drop_recording(req.recording_name, req.asterisk_instance)
            return reply(status=reply.STATUS_DROPPED_TOO_SHORT)
        accepted = deposit_pb2.Deposited(deposit=req, accepted_at=to_timestamp(self.clock()))
        await bus.publish_event(
            self.js,
            subjects.voicemail_event(req.tenant_id, subjects.VOICEMAIL_DEPOSITED),
            accepted,
            msg_id=req.deposit_id,
        )
        return reply(status=reply.STATUS_ACCEPTED, message_id=req.deposit_id)

    async def _drop_recording(self, name: str, instance: str) -> None:
        """Delete a recording from the Asterisk that holds it (instance "" = the one)."""
        if name:
            try:
                await (await self.asterisk.client(instance)).delete_stored_recording(name)
            except Exception as exc:  # Asterisk's spool is not ours to keep clean at any cost
                log.warning("recording_delete_failed", recording=name, error=str(exc))

    # -- the pipeline (durable consumer on ...voicemail.*.deposited) -------------------------

    async def process(self, deposited: deposit_pb2.Deposited) -> str:
        """Carry one accepted deposit through; returns what happened (for logs and tests)."""
        dep = deposited.deposit
        if await self.done.find_one({"_id": dep.deposit_id}, projection={"_id": 1}):
            return "already_done"
        mailbox = await self.mailboxes.get(dep.tenant_id, dep.user_id)
        if mailbox is None:
            # The mailbox went away meanwhile: nothing of the deposit may stay behind.
            await self._drop_recording(dep.recording_name, dep.asterisk_instance)
            await self.audio.delete(
                message_key(dep.tenant_id, dep.user_id, dep.deposit_id, RECORDING_FORMAT)
            )
            await self._finish(dep.deposit_id, "no_mailbox")
            return "no_mailbox"
        doc = await self.messages.by_id(dep.deposit_id)
        if doc is None:
            doc = await self._store(mailbox, deposited)
            if doc is None:
                await self._finish(dep.deposit_id, "too_short")
                return "too_short"
        if mailbox.email and doc.get("emailed_at") is None:
            await self._email(mailbox, doc)
        if doc.get("alerted_at") is None:
            await self._alert(mailbox, doc)
        if mailbox.email and not mailbox.email_keep:
            # The user keeps voicemail in their inbox only: metadata and audio go together.
            # Done is recorded first, so a crash mid-delete cannot bring the message back.
            await self._finish(dep.deposit_id, "emailed_and_deleted")
            await self.messages.delete(dep.tenant_id, dep.user_id, dep.deposit_id)
            await self.audio.delete(doc["audio_key"])
            await self.push_counts(dep.tenant_id, dep.user_id)
            await self._drop_recording(dep.recording_name, dep.asterisk_instance)
            return "emailed_and_deleted"
        await self.push_counts(dep.tenant_id, dep.user_id)
        await self._drop_recording(dep.recording_name, dep.asterisk_instance)
        await self._finish(dep.deposit_id, "stored")
        return "stored"

    async def _store(self, mailbox: Mailbox, deposited: deposit_pb2.Deposited) -> Doc | None:
        dep = deposited.deposit
        key = message_key(dep.tenant_id, dep.user_id, dep.deposit_id, RECORDING_FORMAT)
        if await self.audio.exists(key):
            data = await self.audio.get(key)  # stored before a crash; the spool copy may be gone
        else:
            try:
                asterisk = await self.asterisk.client(dep.asterisk_instance)
                data = await asterisk.stored_recording_file(dep.recording_name)
            except UnknownInstance as exc:
                raise bus.PermanentError(str(exc)) from None
            except AriNotFound:
                raise bus.PermanentError(
                    f"recording {dep.recording_name} is neither in Asterisk nor in S3"
                ) from None
        data = trim_silence(data)
        duration_s = wav_duration_s(data)
        if duration_s is None:
            duration_s = dep.duration_ms / 1000
        if not self.limits.keeps(duration_s):
            DEPOSITS.labels("too_short").inc()
            await self._drop_recording(dep.recording_name, dep.asterisk_instance)
            return None
        await self.audio.put(key, data)
        received_at = (
            from_timestamp(dep.started_at) or from_timestamp(deposited.accepted_at) or self.clock()
        )
        doc: Doc = {
            "_id": dep.deposit_id,
            "tenant_id": dep.tenant_id,
            "user_id": dep.user_id,
            "call_id": dep.call_id,
            "folder": Folder.NEW.value,
            "received_at": received_at,
            "duration_s": round(duration_s, 3),
            "caller_number": dep.caller_number,
            "caller_name": dep.caller_name,
            "urgent": dep.urgent,
            "sender_user_id": dep.sender_user_id,
            "audio_key": key,
            "audio_format": RECORDING_FORMAT,
            "size_bytes": len(data),
            "emailed_at": None,
            "alerted_at": None,
            "stored_at": self.clock(),
        }
        if await self.messages.insert_once(doc):
            DEPOSITS.labels("stored").inc()
            log.info("message_stored", message_id=dep.deposit_id, duration_s=doc["duration_s"])
            return doc
        stored = await self.messages.by_id(dep.deposit_id)
        assert stored is not None
        return stored

    async def _email(self, mailbox: Mailbox, doc: Doc) -> None:
        message_id = doc["_id"]
        ledger = await self.sends.find_one({"_id": message_id})
        if ledger is not None and ledger.get("sent_at") is not None:
            # Sent before a crash that came before the message's own mark.
            await self.messages.mark(message_id, emailed_at=ledger["sent_at"])
            return
        if ledger is not None and ledger.get("committing_at") is not None:
            # The end of DATA went out, and nothing after it was recorded: the server may have
            # the email. SMTP cannot tell; a lost voicemail is worse than a second copy with
            # the same Message-ID, so it goes again, counted.
            EMAILS_UNCERTAIN.inc()
            log.warning("email_outcome_unknown_resending", message_id=message_id)
            await self.sends.update_one({"_id": message_id}, {"$inc": {"uncertain_resends": 1}})
        audio = await self.audio.get(doc["audio_key"]) if mailbox.email_attach else None
        url = (
            None
            if mailbox.email_attach
            else self.audio.url(doc["audio_key"], self.email_link_ttl_s)
        )
        email = compose(
            mailbox,
            sender=self.mail_from,
            message_id=message_id,
            caller_number=doc["caller_number"],
            caller_name=doc["caller_name"],
            received_at=doc["received_at"],
            duration_s=doc["duration_s"],
            urgent=doc["urgent"],
            audio=audio,
            audio_url=url,
        )

        async def committing() -> None:
            await self.sends.update_one(
                {"_id": message_id},
                {
                    "$set": {
                        "committing_at": self.clock(),
                        "header": message_id_header(message_id),
                        "to": mailbox.email,
                    },
                    "$inc": {"attempts": 1},
                },
                upsert=True,
            )

        try:
            await self.mailer.send(email, before_commit=committing)
        except EmailNotSent:
            # Certainly not taken: the next attempt is a first send, not a resend.
            await self.sends.update_one({"_id": message_id}, {"$set": {"committing_at": None}})
            raise
        sent_at = self.clock()
        await self.sends.update_one({"_id": message_id}, {"$set": {"sent_at": sent_at}})
        await self.messages.mark(message_id, emailed_at=sent_at)
        log.info("message_emailed", message_id=message_id)

    async def _alert(self, mailbox: Mailbox, doc: Doc) -> None:
        event = alerts_pb2.MessageReceived(
            header=call_pb2.EventHeader(
                event_id=f"{doc['_id']}:{subjects.VOICEMAIL_MESSAGE_RECEIVED}",
                tenant_id=doc["tenant_id"],
                call_id=doc.get("call_id", ""),
                occurred_at=to_timestamp(doc["received_at"]),
            ),
            user_id=doc["user_id"],
            message_id=doc["_id"],
            caller_number=doc["caller_number"],
            caller_name=doc["caller_name"],
            duration_s=round(doc["duration_s"]),
            urgent=doc["urgent"],
            received_at=to_timestamp(doc["received_at"]),
            alert_sms=mailbox.alerts.sms,
            alert_email=mailbox.alerts.email,
            alert_call=mailbox.alerts.call,
        )
        await bus.publish_event(
            self.js,
            subjects.voicemail_event(doc["tenant_id"], subjects.VOICEMAIL_MESSAGE_RECEIVED),
            event,
            msg_id=event.header.event_id,
        )
        await self.messages.mark(doc["_id"], alerted_at=self.clock())

    async def push_counts(self, tenant_id: str, user_id: str) -> None:
        """Message waiting to the user's phones as the directory knows them (each SIP device,
        plus any extra targets set on the mailbox): the counts themselves (not increments),
        so repeats are harmless. Raises if the directory or Asterisk does not answer."""
        mailbox = await self.mailboxes.get(tenant_id, user_id)
        if mailbox is None:
            return
        owner = await self.directory.user(tenant_id, user_id)
        targets = tuple(dict.fromkeys((*mwi_targets(owner), *mailbox.mwi_targets)))
        if not targets:
            return
        counts = await self.messages.counts(tenant_id, user_id)
        await mwi.send_counts(
            # The default Asterisk (RINGWISE_ARI_URL; in Kubernetes any pod): a SIP URI target
            # is reached from any of them, an endpoint's registered contacts from the pod
            # holding them, or through the SIP edge's location table from the others.
            await self.asterisk.client(),
            targets,
            f"sip:{mwi_mailbox(tenant_id, user_id)}",
            new=counts.new,
            old=counts.saved,
            urgent=counts.new_urgent,
            phones_via_edge=self.phones_via_edge,
        )

    async def refresh_counts(self, tenant_id: str, user_id: str) -> None:
        """push_counts after a change by the user (API, phone, retention): a directory or
        Asterisk hiccup must not fail their action; the next change sends the counts again."""
        try:
            await self.push_counts(tenant_id, user_id)
        except Exception as exc:
            log.warning("mwi_refresh_failed", user_id=user_id, error=repr(exc))

    async def _finish(self, deposit_id: str, outcome: str) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self.done.insert_one({"_id": deposit_id, "outcome": outcome, "at": self.clock()})

    # -- consumer wiring -----------------------------------------------------------------------

    async def handle_batch(self, msgs: list[Msg]) -> list[Exception | None]:
        gate = asyncio.Semaphore(PIPELINE_CONCURRENCY)

        async def one(msg: Msg) -> Exception | None:
            async with gate:
                try:
                    deposited = deposit_pb2.Deposited()
                    try:
                        deposited.ParseFromString(msg.data)
                    except Exception as exc:
                        raise bus.PermanentError(f"undecodable deposit: {exc}") from exc
                    dep = deposited.deposit
                    with bind_call(dep.call_id or "-", tenant_id=dep.tenant_id or None):
                        await self.process(deposited)
                except Exception as exc:
                    log.warning("deposit_failed", error=repr(exc))
                    return exc
                return None

        return list(await asyncio.gather(*(one(msg) for msg in msgs)))


def deposits_done(client: AsyncMongoClient[Doc], database: str) -> AsyncCollection[Doc]:
    """Deposits carried through (or dropped): the record that makes redelivery a no-op even
    after the message itself was deleted (email-only users, retention)."""
    return client[database].deposits_done


def email_sends(client: AsyncMongoClient[Doc], database: str) -> AsyncCollection[Doc]:
    """The email send ledger, one document per message (see Voicemail._email)."""
    return client[database].email_sends


DEPOSIT_CONSUMER = bus.ConsumerSpec(
    stream=subjects.VOICEMAIL_STREAM,
    durable="voicemail-deposits",
    filter_subjects=[subjects.voicemail_events_of_kind(subjects.VOICEMAIL_DEPOSITED)],
    ack_wait_s=20.0,
    max_ack_pending=200,
)
VOICEMAIL_STREAM = bus.StreamSpec(subjects.VOICEMAIL_STREAM, [subjects.VOICEMAIL_EVENTS])


def delivery_id(tenant_id: str, request_key: str, user_id: str) -> str:
    """The message id of one recipient's copy of one send request: a retried request (same
    key) names the same messages, so each recipient gets exactly one."""
    digest = hashlib.sha256(f"{tenant_id}\0{request_key}\0{user_id}".encode()).hexdigest()
    return digest[:32]


@dataclass(frozen=True)
class TeamRecipients:
    """A team's active members (the directory's, in its order, each once) split by whether
    they have a mailbox: the users a message to the team is deposited for."""

    members: list[str]
    with_mailbox: list[str]

    @property
    def without_mailbox(self) -> list[str]:
        return [u for u in self.members if u not in self.with_mailbox]


async def team_recipients(vm: Voicemail, tenant_id: str, team_id: str) -> TeamRecipients | None:
    """None for no such team of the tenant; raises if the directory does not answer."""
    team = await vm.directory.team(tenant_id, team_id)
    if team is None:
        return None
    members = list(dict.fromkeys(team.member_user_ids))
    with_mailbox = [u for u in members if await vm.mailboxes.get(tenant_id, u) is not None]
    return TeamRecipients(members, with_mailbox)


async def send_voice_message(
    vm: Voicemail,
    tenant_id: str,
    to_user_ids: list[str],
    audio: bytes,
    duration_s: float,
    *,
    sender_number: str,
    sender_name: str,
    urgent: bool,
    sender_user_id: str = "",
    request_key: str = "",
) -> dict[str, str]:
    """A voice message to users (a team broadcast is one per member): the audio goes to S3
    first, then each delivery takes the deposit pipeline (stored, emailed, alerted, MWI).
    With a request_key the message ids derive from it, so sending again (a retry after a
    timeout or a crash halfway) delivers nothing twice, and a copy's audio is the first
    attempt's. Returns message id per user."""
    sent: dict[str, str] = {}
    for user_id in dict.fromkeys(to_user_ids):
        message_id = (
            delivery_id(tenant_id, request_key, user_id) if request_key else uuid.uuid4().hex
        )
        sent[user_id] = message_id
        if request_key and await vm.done.find_one({"_id": message_id}, projection={"_id": 1}):
            continue  # delivered by the first attempt (and maybe deleted since)
        key = message_key(tenant_id, user_id, message_id, RECORDING_FORMAT)
        # A retry may not have what the first attempt had (a phone forward's annotation is
        # gone from Asterisk once used): the audio stored first is the copy's.
        if not (request_key and await vm.audio.exists(key)):
            await vm.audio.put(key, audio)
        deposit = deposit_pb2.DepositCompleteRequest(
            deposit_id=message_id,
            tenant_id=tenant_id,
            user_id=user_id,
            duration_ms=round(duration_s * 1000),
            urgent=urgent,
            caller_number=sender_number,
            caller_name=sender_name,
            started_at=to_timestamp(vm.clock()),
            recording_format=RECORDING_FORMAT,
            sender_user_id=sender_user_id,
        )
        await bus.publish_event(
            vm.js,
            subjects.voicemail_event(tenant_id, subjects.VOICEMAIL_DEPOSITED),
            deposit_pb2.Deposited(deposit=deposit, accepted_at=to_timestamp(vm.clock())),
            msg_id=message_id,
        )
    return sent
