"""The mailbox's forward by phone (mailbox_action ACTION_FORWARD) to a team, on real Mongo-wire
and S3, the deposit pipeline run on what the forward published: each active member with a
mailbox gets one copy (the annotation, then the message), the forwarding owner none; a
retried request (before or after the pipeline ran, the annotation gone from Asterisk by then)
delivers nothing twice and keeps the annotated audio; no member with a mailbox is
STATUS_NO_TARGET. JetStream, Asterisk and the directory are stand-ins."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient
from ringwise.directory.v1 import resolve_pb2
from ringwise.voicemail.v1 import deposit_pb2, mailbox_pb2
from ringwise_dev.infra import Infra
from ringwise_dev.voicemail_testing import tone_wav
from ringwise_kit import bus, subjects
from ringwise_kit.ari import AriNotFound
from ringwise_voicemail.mailbox.store import MailboxStore
from ringwise_voicemail.messages.audio import message_key, wav_duration_s
from ringwise_voicemail.messages.phone import PhoneMailbox, phone_sessions
from ringwise_voicemail.messages.store import MessageStore
from voicemail_harness import s3_audio, voicemail_on

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

_runs = itertools.count()
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
TENANT = "acme"
Action = mailbox_pb2.MailboxActionRequest
Status = mailbox_pb2.MailboxActionReply
MESSAGE_S, ANNOTATION_S = 3.0, 2.0


@dataclass
class PubAck:
    duplicate: bool


class JetStream:
    """Keeps what is published; a msg_id seen before is a duplicate, as in JetStream's window."""

    def __init__(self) -> None:
        self.deposits: list[deposit_pb2.Deposited] = []
        self.seen: set[str] = set()
        self.duplicates = 0

    async def publish(self, subject: str, payload: bytes, **options: Any) -> PubAck:
        msg_id = options["headers"][bus.MSG_ID_HEADER]
        if msg_id in self.seen:
            self.duplicates += 1
            return PubAck(duplicate=True)
        self.seen.add(msg_id)
        if subject.endswith(subjects.VOICEMAIL_DEPOSITED):
            deposited = deposit_pb2.Deposited()
            deposited.ParseFromString(payload)
            self.deposits.append(deposited)
        return PubAck(duplicate=False)


class Asterisk:
    """The spool of the Asterisk that recorded the annotation."""

    def __init__(self) -> None:
        self.recordings: dict[str, bytes] = {}
        self.instances: list[str] = []

    async def client(self, instance: str = "") -> Asterisk:
        self.instances.append(instance)
        return self

    async def stored_recording_file(self, name: str) -> bytes:
        if name not in self.recordings:
            raise AriNotFound(404, "Recording not found", "GET", f"/recordings/stored/{name}")
        return self.recordings[name]

    async def delete_stored_recording(self, name: str) -> bool:
        return self.recordings.pop(name, None) is not None


class Directory:
    """Teams of the tenant with their active members, in order; no user has devices."""

    def __init__(self) -> None:
        self.teams: dict[str, list[str]] = {}

    async def user(self, tenant_id: str, user_id: str) -> None:
        return None

    async def number(self, number: str) -> None:
        return None

    async def extension(self, tenant_id: str, extension: str) -> None:
        return None

    async def team(self, tenant_id: str, team_id: str) -> resolve_pb2.ResolveTeamReply | None:
        if tenant_id != TENANT or team_id not in self.teams:
            return None
        return resolve_pb2.ResolveTeamReply(
            status=resolve_pb2.ResolveNumberReply.STATUS_FOUND,
            tenant_id=tenant_id,
            team_id=team_id,
            member_user_ids=self.teams[team_id],
        )


class Parts:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], infra: Infra) -> None:
        self.run = next(_runs)
        db = f"voicemail_phone_forward_{self.run}"
        self.js = JetStream()
        self.asterisk = Asterisk()
        self.directory = Directory()
        self.messages = MessageStore(client, db)
        self.message_docs = client[db].messages
        self.mailboxes = MailboxStore(client, db)
        self.audio = s3_audio(infra, f"vm-phone-forward-{self.run}")
        # No mailbox here has an email address: the mailer stays unused.
        self.vm = voicemail_on(
            client,
            db,
            self.audio,
            T0,
            mailboxes=self.mailboxes,
            messages=self.messages,
            asterisk=self.asterisk,
            js=self.js,
            directory=self.directory,
        )
        self.sessions = phone_sessions(client, db)
        self.phone = PhoneMailbox(self.vm, self.sessions)

    def user(self, name: str) -> str:
        return f"{name}-{self.run}"

    async def open_mailbox(self, user_id: str) -> None:
        await self.mailboxes.put_settings(TENANT, user_id, {}, T0)

    async def login(self, user_id: str) -> str:
        token = f"session-{user_id}"
        await self.sessions.insert_one(
            {
                "_id": token,
                "tenant_id": TENANT,
                "user_id": user_id,
                "expires_at": T0 + timedelta(minutes=30),
            }
        )
        return token

    async def message(self, user_id: str) -> str:
        message_id = f"m-{user_id}"
        key = message_key(TENANT, user_id, message_id)
        await self.audio.put(key, tone_wav(MESSAGE_S))
        doc = {
            "_id": message_id,
            "tenant_id": TENANT,
            "user_id": user_id,
            "folder": "new",
            "received_at": T0,
            "duration_s": MESSAGE_S,
            "caller_number": "+441632960009",
            "caller_name": "",
            "urgent": True,
            "audio_key": key,
            "emailed_at": None,
            "alerted_at": None,
        }
        assert await self.messages.insert_once(doc)
        return message_id

    def annotation(self, name: str) -> str:
        recording = f"vm-{TENANT}-fwd-{name}-{self.run}"
        self.asterisk.recordings[recording] = tone_wav(ANNOTATION_S, hz=660.0)
        return recording

    async def forward(
        self, session: str, message_id: str, annotation: str, **target: str
    ) -> mailbox_pb2.MailboxActionReply:
        return await self.phone.act(
            Action(
                session=session,
                message_id=message_id,
                action=Action.ACTION_FORWARD,
                annotation_recording=annotation,
                asterisk_instance="asterisk-0",
                **target,
            )
        )

    async def run_pipeline(self) -> list[str]:
        """The deposit consumer on everything published so far (each once, like JetStream)."""
        outcomes = [await self.vm.process(d) for d in self.js.deposits]
        self.js.deposits.clear()
        return outcomes

    async def copies_of(self, user_id: str) -> list[dict[str, Any]]:
        return await self.message_docs.find({"user_id": user_id}).to_list()


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


async def test_a_team_forward_gives_each_member_with_a_mailbox_one_annotated_copy(
    parts: Parts,
) -> None:
    carol, alice, bob, dave = (parts.user(n) for n in ("carol", "alice", "bob", "dave"))
    for user_id in (carol, alice, bob):
        await parts.open_mailbox(user_id)  # dave has none
    parts.directory.teams["tm_support"] = [bob, carol, dave, alice]
    session = await parts.login(carol)
    message_id = await parts.message(carol)
    annotation = parts.annotation("team")

    reply = await parts.forward(session, message_id, annotation, forward_to_team_id="tm_support")
    assert reply.status == Status.STATUS_DONE
    sent = {d.deposit.user_id: d.deposit.deposit_id for d in parts.js.deposits}
    assert list(sent) == [bob, alice]  # the team's order; carol (forwarding) and dave left out
    assert reply.new_message_id == sent[bob]
    assert annotation not in parts.asterisk.recordings  # used, then deleted
    assert set(parts.asterisk.instances) == {"asterisk-0"}  # fetched where it was recorded

    # The answer was lost: routing asks again, the annotation is gone from Asterisk by now.
    again = await parts.forward(session, message_id, annotation, forward_to_team_id="tm_support")
    assert (again.status, again.new_message_id) == (Status.STATUS_DONE, reply.new_message_id)
    assert parts.js.duplicates == 2  # the same two deposits, which JetStream drops
    assert await parts.run_pipeline() == ["stored", "stored"]

    for user_id in (bob, alice):
        [copy] = await parts.copies_of(user_id)
        assert copy["_id"] == sent[user_id]
        assert copy["caller_name"] == f"forwarded by {carol}"
        assert (copy["caller_number"], copy["urgent"]) == ("+441632960009", True)
        # The annotation, then the message: the audio of the first attempt.
        assert copy["duration_s"] == pytest.approx(ANNOTATION_S + MESSAGE_S, abs=0.05)
        audio = await parts.audio.get(copy["audio_key"])
        assert wav_duration_s(audio) == pytest.approx(ANNOTATION_S + MESSAGE_S, abs=0.05)
        assert copy["alerted_at"] is not None  # a new message like any other
    assert [d["_id"] for d in await parts.copies_of(carol)] == [message_id]
    assert await parts.copies_of(dave) == []

    # A late retry, after the pipeline carried the copies through: nothing is sent.
    late = await parts.forward(session, message_id, annotation, forward_to_team_id="tm_support")
    assert (late.status, late.new_message_id) == (Status.STATUS_DONE, reply.new_message_id)
    assert parts.js.deposits == []
    assert [len(await parts.copies_of(u)) for u in (bob, alice)] == [1, 1]


async def test_a_team_without_another_member_with_a_mailbox_is_no_target(parts: Parts) -> None:
    owner, loner = parts.user("owner"), parts.user("loner")
    await parts.open_mailbox(owner)
    parts.directory.teams["tm_alone"] = [owner, loner]  # loner has no mailbox
    parts.directory.teams["tm_empty"] = []
    session = await parts.login(owner)
    message_id = await parts.message(owner)
    for team_id in ("tm_alone", "tm_empty", "tm_unknown"):
        annotation = parts.annotation(team_id)
        reply = await parts.forward(session, message_id, annotation, forward_to_team_id=team_id)
        assert reply.status == Status.STATUS_NO_TARGET, team_id
        assert annotation not in parts.asterisk.recordings  # not left in Asterisk's spool
    assert parts.js.deposits == []


async def test_a_user_forward_is_delivered_once_on_a_retry_too(parts: Parts) -> None:
    owner, colleague = parts.user("sam"), parts.user("kim")
    for user_id in (owner, colleague):
        await parts.open_mailbox(user_id)
    session = await parts.login(owner)
    message_id = await parts.message(owner)
    annotation = parts.annotation("user")
    first = await parts.forward(session, message_id, annotation, forward_to_user_id=colleague)
    again = await parts.forward(session, message_id, annotation, forward_to_user_id=colleague)
    assert first.status == again.status == Status.STATUS_DONE
    assert first.new_message_id == again.new_message_id
    assert await parts.run_pipeline() == ["stored"]
    [copy] = await parts.copies_of(colleague)
    assert copy["duration_s"] == pytest.approx(ANNOTATION_S + MESSAGE_S, abs=0.05)


async def test_a_forward_names_a_user_or_a_team_not_both(parts: Parts) -> None:
    owner = parts.user("both")
    await parts.open_mailbox(owner)
    session = await parts.login(owner)
    message_id = await parts.message(owner)
    with pytest.raises(ValueError, match="not both"):
        await parts.forward(
            session,
            message_id,
            parts.annotation("both"),
            forward_to_user_id=owner,
            forward_to_team_id="tm_support",
        )
